"""`callwatch serve --workers 2`: two receiver processes on one port, each storing its 202s,
sharing each source's rate limit."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from callwatch.cli.up import child_environment
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.tables import InboxEvent
from tests.conftest import create_org, create_source, path_of, signed

START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    """The receiver processes uvicorn started (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in command:
                found.append(int(entry.name))
    return sorted(found)


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "callwatch", "serve", "--workers", "2", "--port", str(port)],
        env=child_environment(settings),
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(_children(process.pid)) < 2 or not _ready(base):
            assert process.poll() is None, "callwatch serve exited"
            assert time.monotonic() < deadline, "callwatch serve did not start"
            time.sleep(0.2)
        yield base, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def _ready(base: str) -> bool:
    try:
        return httpx.get(base + "/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _post(http: httpx.Client, url: str, secret: str, call_id: str) -> httpx.Response:
    body = json.dumps(
        {
            "type": "call.status_changed",
            "timestamp": "2026-11-20T10:00:00Z",
            "data": {"call_id": call_id, "status": "ringing"},
        }
    ).encode()
    return http.post(url, content=body, headers=signed(secret, body))


def _send(http: httpx.Client, url: str, secret: str, call_id: str) -> str:
    response = _post(http, url, secret, call_id)
    assert response.status_code == 202, response.text
    [event_id] = response.json()["events"]
    return str(event_id)


def test_two_workers_answer_on_one_port_and_store_every_202(
    served: tuple[str, subprocess.Popen[bytes]], client: TestClient, runtime: Runtime
) -> None:
    base, process = served
    source = create_source(client, create_org(client))
    url, secret = base + path_of(source["webhook_url"]), source["webhook_secret"]
    workers = _children(process.pid)
    assert len(workers) == 2
    accepted = []
    # With one worker stopped, only the other can accept: each answers on its own.
    for stopped, answering in (workers, reversed(workers)):
        os.kill(stopped, signal.SIGSTOP)
        try:
            with httpx.Client(timeout=10.0) as http:
                accepted += [_send(http, url, secret, f"{answering}-{n}") for n in range(10)]
        finally:
            os.kill(stopped, signal.SIGCONT)
    with httpx.Client(timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        accepted += [_send(http, url, secret, f"both-{n}") for n in range(20)]
    with runtime.sessions() as session:
        stored = session.scalars(select(InboxEvent.id)).all()
        count = session.scalar(select(func.count()).select_from(InboxEvent))
    assert (len(accepted), sorted(stored), count) == (40, sorted(accepted), 40)
    assert _children(process.pid) == workers  # neither was restarted meanwhile


def test_both_receivers_draw_on_one_rate_limit(
    served: tuple[str, subprocess.Popen[bytes]], client: TestClient
) -> None:
    base, process = served
    # Refills one token per 100 s: the burst is all the run may accept, across both processes.
    limit = {"per_second": 0.01, "burst": 6}
    source = create_source(client, create_org(client), settings={"rate_limit": limit})
    url, secret = base + path_of(source["webhook_url"]), source["webhook_secret"]
    statuses, retry_afters = [], set()
    for stopped in _children(process.pid):
        os.kill(stopped, signal.SIGSTOP)
        try:
            with httpx.Client(timeout=10.0) as http:
                for n in range(10):
                    response = _post(http, url, secret, f"limited-{stopped}-{n}")
                    statuses.append(response.status_code)
                    if response.status_code == 429:
                        assert response.headers["content-type"] == "application/problem+json"
                        retry_afters.add(response.headers["retry-after"])
        finally:
            os.kill(stopped, signal.SIGCONT)
    assert (statuses.count(202), statuses.count(429)) == (6, 14), statuses
    assert all(1 <= int(seconds) <= 100 for seconds in retry_afters)
