"""`callwatch up --demo` end to end: embedded Redis + SQLite, web, worker, beat, simulated calls."""

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from callwatch.cli.demo import DemoSource, demo_source, setup_demo
from callwatch.cli.up import child_environment, local_url
from callwatch.db import transaction
from callwatch.orgs import keys, tenancy
from callwatch.outbound import ssrf
from callwatch.runtime import Runtime, utcnow
from callwatch.settings import Settings
from callwatch.simulator import PLATFORMS, DetailServer

BANNER_TIMEOUT_S = 150.0  # more than `up`'s own HEALTH_TIMEOUT_S
ASSEMBLED_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _descendants(root: int) -> set[int]:
    pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    children: dict[int, list[int]] = {}
    for pid in pids:
        parent = _parent_of(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def _read(log: IO[str]) -> str:
    log.seek(0)
    return log.read()


@dataclass
class Up:
    process: "subprocess.Popen[bytes]"
    children: set[int] = field(default_factory=set)

    def record_children(self) -> set[int]:
        self.children |= _descendants(self.process.pid)
        return set(self.children)


@contextmanager
def _callwatch_up(
    workdir: Path, port: int, stdout: IO[str], stderr: IO[str], *options: str
) -> Iterator[Up]:
    """`callwatch up` in `workdir`; whatever is left of it is killed at the end."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CALLWATCH_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "callwatch", "up", "--port", str(port), *options],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
    )  # fmt: skip
    up = Up(process)
    try:
        yield up
    finally:
        leftovers = up.record_children()
        if process.poll() is None:
            process.kill()
        process.wait()
        for pid in leftovers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _wait_for_banner(up: Up, stdout: IO[str], pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + BANNER_TIMEOUT_S
    while time.monotonic() < deadline:
        found = re.search(pattern, _read(stdout))
        if found:
            return found
        assert up.process.poll() is None, "callwatch up exited before printing its banner"
        up.record_children()
        time.sleep(0.2)
    raise AssertionError(f"no banner matching {pattern!r}")


def _command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return []


def _wait_for_assembled_call(base_url: str, api_key: str) -> dict[str, Any]:
    deadline = time.monotonic() + ASSEMBLED_TIMEOUT_S
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=5) as client:
        while time.monotonic() < deadline:
            response = client.get("/api/calls")
            assert response.status_code == 200, response.text
            for item in response.json()["items"]:
                if item["assembly"]["state"] == "assembled":
                    return dict(item)
            time.sleep(1)
    raise AssertionError(f"no assembled call within {ASSEMBLED_TIMEOUT_S:g} s")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_up_demo_assembles_calls_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = _free_port()
    with (
        open(tmp_path / "stdout.txt", "w+") as stdout,
        open(tmp_path / "stderr.txt", "w+") as stderr,
    ):
        try:
            with _callwatch_up(tmp_path, port, stdout, stderr, "--demo") as up:
                api_key = _wait_for_banner(up, stdout, r"API key\s+(cw_\S+)").group(1)
                call = _wait_for_assembled_call(local_url("127.0.0.1", port), api_key)
                assert call["source"] == "demo"
                children = up.record_children()
                assert len(children) >= 4  # web, worker, beat, redis-server

                up.process.send_signal(signal.SIGINT)
                code = up.process.wait(EXIT_TIMEOUT_S)

                assert code == 0
                assert not {child for child in children if _alive(child)}
                assert "stopped" in _read(stdout)
                # The processes' logs went to the file; the terminal got the banner and status.
                logged = (tmp_path / ".callwatch" / "up.log").read_text().splitlines()
                assert [line for line in logged if line.startswith('{"')] != []
                assert [line for line in _read(stderr).splitlines() if line.startswith("{")] == []
                assert "logs         .callwatch/up.log" in _read(stdout)
                assert re.search(r"\d+ events received · [1-9]\d* calls assembled", _read(stdout))
                assert (tmp_path / ".callwatch" / "callwatch.db").exists()
                assert (tmp_path / ".callwatch" / "redis" / "appendonly.aof").exists()
        finally:
            print("---- callwatch up stdout\n" + _read(stdout))
            print("---- callwatch up stderr (tail)\n" + _read(stderr)[-20000:])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_demo_runs_on_one_data_dir_print_the_same_key_and_make_one_org(
    tmp_path: Path,
) -> None:
    def demo_run(run: int) -> tuple[str, list[str]]:
        port = _free_port()
        with (
            open(tmp_path / f"stdout{run}.txt", "w+") as stdout,
            open(tmp_path / f"stderr{run}.txt", "w+") as stderr,
        ):
            try:
                with _callwatch_up(tmp_path, port, stdout, stderr, "--demo") as up:
                    banner = _wait_for_banner(
                        up, stdout, r"admin token\s+(adm_\S+)(?s:.*)API key\s+(cw_\S+)"
                    )
                    admin, api_key = banner.group(1), banner.group(2)
                    orgs = httpx.get(
                        local_url("127.0.0.1", port) + "/api/admin/orgs",
                        headers={"authorization": f"Bearer {admin}"},
                        timeout=5,
                    ).json()["items"]
                    up.process.send_signal(signal.SIGINT)
                    assert up.process.wait(EXIT_TIMEOUT_S) == 0
                    return api_key, [org["name"] for org in orgs]
            finally:
                print(f"---- run {run} stdout\n" + _read(stdout))
                print(f"---- run {run} stderr (tail)\n" + _read(stderr)[-5000:])

    first, second = demo_run(1), demo_run(2)

    assert second == first
    assert first[1] == ["demo"]


@pytest.mark.slow
def test_a_child_that_dies_stops_everything_with_exit_code_1(tmp_path: Path) -> None:
    with (
        open(tmp_path / "stdout.txt", "w+") as stdout,
        open(tmp_path / "stderr.txt", "w+") as stderr,
    ):
        try:
            with _callwatch_up(tmp_path, _free_port(), stdout, stderr, "--verbose") as up:
                _wait_for_banner(up, stdout, r"admin token\s+adm_")
                children = up.record_children()
                (worker,) = [pid for pid in children if "worker" in _command_line(pid)]

                os.kill(worker, signal.SIGKILL)
                code = up.process.wait(EXIT_TIMEOUT_S)

                assert code == 1
                assert "the worker process exited unexpectedly" in _read(stderr)
                # --verbose: the processes' output here, as before, and no log file.
                assert "  logs  " not in _read(stdout)
                assert not (tmp_path / ".callwatch" / "up.log").exists()
                assert not {child for child in children if _alive(child)}
        finally:
            print("---- callwatch up stdout\n" + _read(stdout))
            print("---- callwatch up stderr (tail)\n" + _read(stderr)[-20000:])


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {key: value for key, value in os.environ.items() if not key.startswith("CALLWATCH_")}
        result = subprocess.run(
            [sys.executable, "-m", "callwatch", "up", "--port", str(port)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert not (tmp_path / ".callwatch").exists()


def test_children_get_the_resolved_configuration(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from callwatch.settings import Settings

    settings = Settings(
        redis_url="redis://127.0.0.1:1/0",
        database_url="sqlite:///x.db",
        secret_key=SecretStr("s"),
        admin_token=SecretStr("adm_x"),
        public_url="http://example.test",
        data_dir=tmp_path,
    )
    env = child_environment(settings)
    assert env["CALLWATCH_REDIS_URL"] == "redis://127.0.0.1:1/0"
    assert env["CALLWATCH_DATABASE_URL"] == "sqlite:///x.db"
    assert env["CALLWATCH_SECRET_KEY"] == "s"
    assert env["CALLWATCH_ADMIN_TOKEN"] == "adm_x"
    assert env["CALLWATCH_PUBLIC_URL"] == "http://example.test"
    assert env["CALLWATCH_ALLOW_PRIVATE_TARGETS"] == "false"
    assert env["PATH"] == os.environ["PATH"]


def test_local_url_turns_wildcards_into_loopback() -> None:
    assert local_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"  # noqa: S104
    assert local_url("::1", 8000) == "http://[::1]:8000"
    assert local_url("localhost", 9) == "http://localhost:9"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_up_demo_plays_atoms_calls_when_asked(tmp_path: Path) -> None:
    port = _free_port()
    with (
        open(tmp_path / "stdout.txt", "w+") as stdout,
        open(tmp_path / "stderr.txt", "w+") as stderr,
        _callwatch_up(tmp_path, port, stdout, stderr, "--demo", "--provider", "atoms") as up,
    ):
        api_key = _wait_for_banner(up, stdout, r"API key\s+(cw_\S+)").group(1)
        call = _wait_for_assembled_call(local_url("127.0.0.1", port), api_key)
        up.process.send_signal(signal.SIGINT)
        up.process.wait(EXIT_TIMEOUT_S)

    assert (call["source"], call["provider"], call["provider_call_id"][:5]) == (
        "demo-atoms",
        "atoms",
        "CALL-",
    )


@pytest.mark.parametrize("provider", sorted(PLATFORMS))
def test_the_demo_source_reads_its_platforms_simulated_api(
    settings: Settings, runtime: Runtime, provider: str
) -> None:
    with ExitStack() as stack:
        demo = setup_demo(stack, settings, provider)
        detail_url, api_base_url = demo.server.detail_url, demo.server.api_base_url(provider)
        with transaction(runtime.sessions) as session:
            made = {source.name: source for source in tenancy.list_sources(session, demo.org_id)}
            name = "demo" if provider == "generic" else f"demo-{provider}"
            config = tenancy.config_of(made[name], runtime.vault)
    analysed = PLATFORMS[provider].analyses
    # A platform that analyses another's calls gets that platform's demo source too.
    assert sorted(made) == sorted({name, "demo" if analysed else name})
    assert (demo.calls_url is not None) == (analysed is not None)
    secret_name = PLATFORMS[provider].secret_name
    assert demo.secret == (config.credentials[secret_name] if secret_name else "")
    if provider == "generic":
        assert (config.name, config.settings["detail_url"]) == ("demo", detail_url)
        assert demo.secret.startswith("whsec_")
    else:
        assert (config.name, config.settings["api_base_url"]) == (f"demo-{provider}", api_base_url)
        assert config.credentials["api_key"]


def test_a_kept_demo_source_follows_the_new_server_and_gains_an_api_key(
    runtime: Runtime,
) -> None:
    with DetailServer() as server, transaction(runtime.sessions) as session:
        org, _ = tenancy.create_org(session, tenancy.OrgIn(name="demo"), utcnow())
        data = tenancy.SourceIn(
            name="demo-atoms",
            provider="atoms",
            settings=tenancy.SourceSettings(api_base_url="http://127.0.0.1:1/atoms"),
            credentials={"signing_secret": "kept"},
        )
        guard = ssrf.Guard(allow_private=True)
        tenancy.create_source(session, runtime.vault, org.id, data, utcnow(), guard=guard)
        source = demo_source(session, runtime, org.id, server, "atoms")
        config = tenancy.config_of(source, runtime.vault)
        api_base_url = server.api_base_url("atoms")
    assert config.settings["api_base_url"] == api_base_url
    assert config.credentials["webhook_secret"] == "kept"
    assert set(config.credentials) == {"webhook_secret", "api_key"}


def test_the_demo_keeps_its_org_and_key_across_runs(settings: Settings, runtime: Runtime) -> None:
    def demo_run() -> DemoSource:
        with ExitStack() as stack:
            return setup_demo(stack, settings, "generic")

    first, second = demo_run(), demo_run()
    key_file = settings.data_dir / "demo_api_key"
    with transaction(runtime.sessions) as session:
        orgs = [org.name for org in keys.list_orgs(session)]
        kept = [key.name for key in keys.list_keys(session, first.org_id)]

    assert (second.org_id, second.api_key) == (first.org_id, first.api_key)
    assert (orgs, kept) == (["demo"], ["first key"])
    assert key_file.read_text() == first.api_key + "\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_the_demo_mints_a_key_when_the_kept_one_no_longer_verifies(
    settings: Settings, runtime: Runtime
) -> None:
    key_file = settings.data_dir / "demo_api_key"
    with ExitStack() as stack:
        first = setup_demo(stack, settings, "generic")
    with transaction(runtime.sessions) as session:
        (old,) = keys.list_keys(session, first.org_id)
        keys.issue(session, first.org_id, utcnow(), name="spare")
        keys.revoke(session, first.org_id, old.id)

    with ExitStack() as stack:
        second = setup_demo(stack, settings, "generic")
    key_file.write_text("cw_not_a_key\n")
    with ExitStack() as stack:
        third = setup_demo(stack, settings, "generic")

    with transaction(runtime.sessions) as session:
        assert keys.org_of(session, second.api_key) == first.org_id
        names = [key.name for key in keys.list_keys(session, first.org_id)]
    assert second.org_id == third.org_id == first.org_id
    assert len({first.api_key, second.api_key, third.api_key}) == 3
    assert names == ["spare", "demo", "demo"]
    assert key_file.read_text() == third.api_key + "\n"
