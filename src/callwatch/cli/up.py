"""`callwatch up`: web, worker and beat plus embedded Redis and SQLite, in one command."""

import ipaddress
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from enum import Enum
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self

import httpx
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from callwatch import migrate, runtime
from callwatch.cli.demo import DemoReporter, DemoSource, setup_demo, start_demo
from callwatch.cli.embedded import EmbeddedRedis
from callwatch.cli.status import STATUS_EVERY_S, StatusLine
from callwatch.cli.status import read as status_read
from callwatch.settings import Settings

# Only a web process that hangs meets it: on a loaded 2-core machine importing the app alone took
# 12 to 14 s, and 30 s was missed.
HEALTH_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
PROGRESS_EVERY_S = 5.0
POLL_S = 0.2
LOG_FILE = "up.log"


def run_up(
    settings: Settings, *, demo: str | None, host: str, port: int, verbose: bool = False
) -> int:
    """Run everything until Ctrl-C/SIGTERM (0) or until a process dies unexpectedly (1).

    `demo` names the platform whose simulated calls to play (None: no demo). The processes' logs
    go to LOG_FILE under the data directory and a live status line shows instead, unless
    `verbose`: then their JSON log lines stream here."""
    stop = threading.Event()
    with _stop_on_signals(stop):
        with ExitStack() as stack:
            code = _up(stack, settings, demo=demo, host=host, port=port, stop=stop, verbose=verbose)
        print("stopped", flush=True)
    return code


def _up(
    stack: ExitStack,
    settings: Settings,
    *,
    demo: str | None,
    host: str,
    port: int,
    stop: threading.Event,
    verbose: bool,
) -> int:
    if not _port_free(host, port):
        return _error(f"port {port} on {host} is already in use; pick another with --port")
    if demo:
        # The demo's simulated platform APIs are on loopback, which only this switch allows.
        settings = settings.model_copy(update={"allow_private_targets": True})
    settings = _prepare(stack, settings, local_url(host, port))
    demo_source = setup_demo(stack, settings, demo) if demo else None
    if stop.is_set():
        return 0

    log = None if verbose else stack.enter_context(log_path(settings).open("ab"))
    supervisor = stack.enter_context(Supervisor(child_environment(settings), log))
    supervisor.spawn("web", ["serve", "--host", host, "--port", str(port)])
    supervisor.spawn("worker", ["worker"])
    supervisor.spawn("beat", ["beat"])

    started = _wait_until_healthy(local_url(host, port), supervisor, stop)
    if started is not Startup.healthy:
        return 0 if started is Startup.interrupted else _startup_error(started, supervisor)

    _print_banner(settings, demo_source, None if verbose else log_path(settings))
    reporter = None if demo_source is None else start_demo(stack, settings, demo_source)
    if verbose:
        return _watch(supervisor, stop, reporter)
    sessions = stack.enter_context(runtime.opened(settings)).sessions
    return _watch_quietly(supervisor, stop, reporter, sessions, log_path(settings))


# ---------------------------------------------------------------- preparation


def _prepare(stack: ExitStack, settings: Settings, default_public_url: str) -> Settings:
    """Data dir, Redis, schema and secrets; returns the settings every child runs with."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _ensure_sqlite_directory(settings.database_url)
    redis_url = settings.redis_url
    if redis_url is None:
        redis_url = stack.enter_context(EmbeddedRedis(settings.data_dir / "redis")).url
    migrate.upgrade(settings.database_url)
    public_url = settings.public_url if "public_url" in settings.model_fields_set else None
    return settings.model_copy(
        update={
            "redis_url": redis_url,
            "secret_key": SecretStr(runtime.secret_key(settings)),
            "admin_token": SecretStr(runtime.admin_token(settings)),
            "public_url": public_url or default_public_url,
        }
    )


def _ensure_sqlite_directory(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        os.makedirs(os.path.dirname(os.path.abspath(url.database)), exist_ok=True)


def child_environment(settings: Settings) -> dict[str, str]:
    """os.environ plus the resolved configuration, so every child agrees on it."""
    return {
        **os.environ,
        "CALLWATCH_REDIS_URL": settings.broker_url,
        "CALLWATCH_DATABASE_URL": settings.database_url,
        "CALLWATCH_SECRET_KEY": runtime.secret_key(settings),
        "CALLWATCH_ADMIN_TOKEN": runtime.admin_token(settings),
        "CALLWATCH_PUBLIC_URL": settings.public_url,
        "CALLWATCH_DATA_DIR": str(settings.data_dir.resolve()),
        "CALLWATCH_ALLOW_PRIVATE_TARGETS": str(settings.allow_private_targets).lower(),
    }


def local_url(host: str, port: int) -> str:
    """The URL this machine reaches the web process at (a wildcard host means loopback)."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - recognising, not binding
        host = "127.0.0.1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"http://{host}:{port}"


def _port_free(host: str, port: int) -> bool:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return True  # let the web process report the bad host
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            return False
    return True


# ---------------------------------------------------------------- child processes


class Supervisor:
    """Child `callwatch` processes started together and stopped together.

    Each child runs in its own process group: a Ctrl-C in the terminal reaches only `up`, which
    then stops the children in order (SIGTERM, then SIGKILL after STOP_TIMEOUT_S).
    """

    def __init__(self, env: dict[str, str], log: IO[bytes] | None = None) -> None:
        self._env = env
        self._log = log  # where the children write, None: this process's stderr
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, args: list[str]) -> None:
        self._children[name] = subprocess.Popen(
            [sys.executable, "-m", "callwatch", *args],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=_stderr_fd() if self._log is None else self._log,
            stderr=self._log,
            process_group=0,
        )

    def first_exited(self) -> tuple[str, int] | None:
        for name, process in self._children.items():
            code = process.poll()
            if code is not None:
                return name, code
        return None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        for process in self._children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self._children.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _stderr_fd() -> int | None:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # stderr is not a real file (e.g. captured); children inherit stdout


class Startup(Enum):
    healthy = "healthy"
    child_exited = "child_exited"
    timed_out = "timed_out"
    interrupted = "interrupted"


def _wait_until_healthy(base_url: str, supervisor: Supervisor, stop: threading.Event) -> Startup:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if stop.is_set():
                return Startup.interrupted
            if supervisor.first_exited() is not None:
                return Startup.child_exited
            try:
                if client.get(base_url + "/healthz").status_code == 200:
                    return Startup.healthy
            except httpx.HTTPError:
                pass
            stop.wait(POLL_S)
    return Startup.timed_out


def _startup_error(outcome: Startup, supervisor: Supervisor) -> int:
    exited = supervisor.first_exited()
    if outcome is Startup.child_exited and exited is not None:
        name, code = exited
        return _error(f"the {name} process exited during startup (exit code {code}); see above")
    return _error(f"the web process did not answer /healthz within {HEALTH_TIMEOUT_S:g} s")


def _watch(supervisor: Supervisor, stop: threading.Event, reporter: "DemoReporter | None") -> int:
    next_report = time.monotonic() + PROGRESS_EVERY_S
    while not stop.wait(POLL_S):
        exited = supervisor.first_exited()
        if exited is not None:
            name, code = exited
            return _error(f"the {name} process exited unexpectedly (exit code {code})")
        if reporter is not None and time.monotonic() >= next_report:
            reporter.report()
            next_report = time.monotonic() + PROGRESS_EVERY_S
    print("callwatch: stopping", file=sys.stderr, flush=True)
    return 0


def _watch_quietly(
    supervisor: Supervisor,
    stop: threading.Event,
    reporter: "DemoReporter | None",
    sessions: "sessionmaker[Session]",
    log: Path,
) -> int:
    since = runtime.utcnow()

    def show() -> None:
        status.show(status_read(sessions, since), reporter.line() if reporter else "")

    exited = None
    with StatusLine(sys.stdout) as status:
        while exited is None:
            show()
            if stop.wait(STATUS_EVERY_S):
                break
            exited = supervisor.first_exited()
        show()  # the counts as they stand at the end
    if exited is not None:
        name, code = exited
        return _error(f"the {name} process exited unexpectedly (exit code {code}); see {log}")
    print("callwatch: stopping", file=sys.stderr, flush=True)
    return 0


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` instead of interrupting whatever runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _error(message: str) -> int:
    print(f"callwatch: {message}", file=sys.stderr, flush=True)
    return 1


# ---------------------------------------------------------------- banner


def log_path(settings: Settings) -> Path:
    return settings.data_dir / LOG_FILE


def _print_banner(settings: Settings, demo: DemoSource | None, log: Path | None) -> None:
    base = settings.public_url.rstrip("/")
    lines = [
        "",
        "callwatch is running",
        f"  dashboard    {base}/" + (f"  sign in with {demo.api_key}" if demo is not None else ""),
        f"  URL          {base}",
        f"  admin token  {runtime.admin_token(settings)}",
        f"  API docs     {base}/docs",
        f"  Redis        {settings.broker_url}",
        f"  ops stream   uv run callwatch tail calls --redis-url {settings.broker_url}",
    ]
    if log is not None:
        lines.append(f"  logs         {log}  (--verbose prints them here instead)")
    if demo is not None:
        lines += [
            "",
            "demo (simulated calls, one per second; private targets allowed, as its platform API "
            "is on loopback)",
            f"  API key      {demo.api_key}",
            f"  webhook URL  {demo.webhook_url}",
            "",
            "  list calls:",
            f"    {_curl(demo.api_key, shlex.quote(base + '/api/calls'))}",
            f"    uv run callwatch calls list --url {base} --api-key {demo.api_key}",
            "  one call, or aggregates:",
            f"    uv run callwatch calls get <id> --url {base} --api-key {demo.api_key}",
            f"    uv run callwatch calls stats --group-by agent --url {base} --api-key "
            f"{demo.api_key}",
        ]
    lines += ["", "Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)


def _curl(api_key: str, quoted_url: str) -> str:
    return f"curl -s -H {shlex.quote('Authorization: Bearer ' + api_key)} {quoted_url}"
