"""The receiver through Postgres crashes: `callwatch serve` as shipped (uvloop + httptools) and on
asyncio's loop, against a cluster of the test's own that is stopped, killed and terminated.

While the database is gone every webhook gets 503 with Retry-After within a second (never a
timeout), /readyz says not ready; within 5 s of the database coming back webhooks get 202 again,
with no restart; every 202 is a row in the inbox; SIGTERM stops the server within its grace
period whatever the database does. (Issue 21: under uvloop a crash used to hang intake for good.)
"""

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from callwatch import migrate
from tests.conftest import ADMIN, signed
from tests.faults.cluster import (
    PostgresCluster,
    RedisServer,
    free_port,
    postgres_cluster,
    redis_server,
)

pytestmark = pytest.mark.faults

INTAKE = "callwatch-intake"  # the intake writer's application_name
CLIENT_TIMEOUT_S = 2.0
ANSWER_WITHIN_S = 1.0
RECOVER_WITHIN_S = 5.0
SENDERS = int(os.environ.get("FAULT_SENDERS", "8"))
GRACE_S = 3


@dataclass
class Reply:
    sent: float  # monotonic
    elapsed: float | None  # None: the client timed out or the connection failed
    status: int | None = None
    retry_after: str | None = None
    events: list[str] = field(default_factory=list)


@dataclass
class Stack:
    pg: PostgresCluster
    redis: RedisServer
    url: str


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with postgres_cluster() as pg, redis_server() as rs:
        url = pg.create_database("callwatch")
        migrate.upgrade(url)
        yield Stack(pg, rs, url)


class Server:
    """`callwatch serve` in a subprocess, with a generic source to send signed webhooks to."""

    def __init__(self, stack: Stack, tmp: Path, loop: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = os.environ | {
            "CALLWATCH_DATABASE_URL": stack.url,
            "CALLWATCH_REDIS_URL": stack.redis.url(0),
            "CALLWATCH_ADMIN_TOKEN": ADMIN,
            "CALLWATCH_SECRET_KEY": "fault-test-secret",
            "CALLWATCH_PUBLIC_URL": self.base,
            "CALLWATCH_DATA_DIR": str(tmp),
            "CALLWATCH_LOG_LEVEL": "CRITICAL",
            "CALLWATCH_SHUTDOWN_GRACE_S": str(GRACE_S),
        }
        args = ["serve", "--port", str(self.port)] + (["--loop", loop] if loop != "auto" else [])
        with (tmp / "serve.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "callwatch", *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self._wait_healthy()
        self.path, self.secret = self._source()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "callwatch serve exited at start"
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError("callwatch serve did not start")

    def _source(self) -> tuple[str, str]:
        admin = {"authorization": f"Bearer {ADMIN}"}
        org = httpx.post(
            self.base + "/api/admin/orgs", json={"name": secrets.token_hex(4)}, headers=admin
        ).json()
        source = httpx.post(
            self.base + "/api/sources",
            json={"name": "gen", "provider": "generic"},
            headers={"authorization": f"Bearer {org['api_key']}"},
        ).json()
        return "/webhooks/" + source["webhook_url"].rsplit("/", 1)[1], source["webhook_secret"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(params=["auto", "asyncio"], ids=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest, stack: Stack, tmp_path: Path) -> Iterator[Server]:
    running = Server(stack, tmp_path, request.param)
    yield running
    running.stop()


class Traffic:
    """Signed webhooks from `SENDERS` threads, and /readyz polled, until stopped."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.replies: list[Reply] = []
        self.readiness: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send) for _ in range(SENDERS)]
        self._threads.append(threading.Thread(target=self._poll_readyz))

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _send(self) -> None:
        with httpx.Client(base_url=self.server.base, timeout=CLIENT_TIMEOUT_S) as client:
            while not self._stop.is_set():
                body = json.dumps(
                    {
                        "type": "call.status_changed",
                        "timestamp": datetime.now(UTC).isoformat(),
                        "data": {"call_id": secrets.token_hex(6), "status": "ringing"},
                    }
                ).encode()
                sent = time.monotonic()
                try:
                    response = client.post(
                        self.server.path,
                        content=body,
                        headers=signed(self.server.secret, body),
                    )
                except httpx.TransportError:
                    self.replies.append(Reply(sent, None))
                    continue
                events = response.json().get("events", []) if response.status_code == 202 else []
                self.replies.append(
                    Reply(
                        sent,
                        time.monotonic() - sent,
                        response.status_code,
                        response.headers.get("retry-after"),
                        events,
                    )
                )
                time.sleep(0.01)

    def _poll_readyz(self) -> None:
        with httpx.Client(base_url=self.server.base, timeout=CLIENT_TIMEOUT_S) as client:
            while not self._stop.is_set():
                at = time.monotonic()
                try:
                    self.readiness.append((at, client.get("/readyz").status_code))
                except httpx.TransportError:
                    self.readiness.append((at, None))
                time.sleep(0.05)

    def accepted_since(self, since: float, seconds: float) -> bool:
        """Every reply sent in the last `seconds` after `since` was a 202 (and there were some)."""
        now = time.monotonic()
        recent = [r for r in list(self.replies) if r.sent >= max(since, now - seconds)]
        return now - since >= seconds and bool(recent) and all(r.status == 202 for r in recent)


def warm_up(traffic: Traffic, stack: Stack) -> None:
    """Until webhooks are being stored: 202s for half a second, intake connected."""
    started = time.monotonic()
    while not (traffic.accepted_since(started, 0.5) and stack.pg.backend_pids(INTAKE)):
        assert time.monotonic() < started + 10, "webhooks not accepted before the fault"
        time.sleep(0.1)


def stop_and_start(stack: Stack) -> None:
    stack.pg.stop_immediate()
    time.sleep(1.5)
    stack.pg.start()


def kill_a_backend(stack: Stack) -> None:
    stack.pg.kill_backend(INTAKE)
    stack.pg.wait_ready()


def kill_a_backend_and_stop(stack: Stack) -> None:
    stack.pg.kill_backend(INTAKE)
    stack.pg.stop_immediate()


def terminate_the_backend(stack: Stack) -> None:
    assert stack.pg.terminate_backends(INTAKE) == 1


def hang_the_backend(stack: Stack) -> None:
    with stack.pg.paused(INTAKE):
        time.sleep(1.5)


def hang_the_database(stack: Stack) -> None:
    with stack.pg.paused():
        time.sleep(1.5)


FAULTS: dict[str, Callable[[Stack], None]] = {
    "immediate stop, then start": stop_and_start,
    "kill -9 of a backend": kill_a_backend,
    "pg_terminate_backend": terminate_the_backend,
    "the intake's backend stopped (SIGSTOP)": hang_the_backend,
    "the whole database stopped (SIGSTOP)": hang_the_database,
}
# Intake stores through a new connection while one backend hangs: ready, rightly.
ABLE_TO_STORE = {"the intake's backend stopped (SIGSTOP)"}


def inbox_ids(url: str) -> set[str]:
    with psycopg.connect(url) as connection:
        return {row[0] for row in connection.execute("SELECT id FROM inbox").fetchall()}


def outcome(traffic: Traffic, down: float, up: float, unready: bool) -> dict[str, object]:
    """What the senders and the readiness probe saw around one fault, as one comparable value."""
    replies = traffic.replies
    late = [r for r in replies if r.sent > up + RECOVER_WITHIN_S]
    during = [s for at, s in traffic.readiness if unready and down + 0.3 <= at <= up - 0.1]
    return {
        "timeouts": sum(r.elapsed is None for r in replies),
        "slower than 1 s": sum((r.elapsed or 0) > ANSWER_WITHIN_S for r in replies),
        "statuses other than 202/503": sorted({r.status for r in replies} - {202, 503, None}),
        "503 without Retry-After": sum(r.status == 503 and not r.retry_after for r in replies),
        "202 before the fault": all(r.status == 202 for r in replies if r.sent + 1 < down),
        "not 202 5 s after the database came back": sum(r.status != 202 for r in late),
        "readyz ready during the outage": sum(status == 200 for status in during),
        "readyz ready at the end": traffic.readiness[-1][1] == 200,
    }


EXPECTED = {
    "timeouts": 0,
    "slower than 1 s": 0,
    "statuses other than 202/503": [],
    "503 without Retry-After": 0,
    "202 before the fault": True,
    "not 202 5 s after the database came back": 0,
    "readyz ready during the outage": 0,
    "readyz ready at the end": True,
}


@pytest.mark.timeout(90)
def test_webhooks_get_503_during_each_database_fault_and_202_soon_after(
    server: Server, stack: Stack
) -> None:
    outcomes: dict[str, object] = {}
    recovery: dict[str, object] = {}
    for name, inject in FAULTS.items():
        with Traffic(server) as traffic:
            warm_up(traffic, stack)
            down = time.monotonic()
            try:
                inject(stack)
            except LookupError as exc:  # no intake connection to kill: intake did not recover
                outcomes[name] = f"not injected: {exc}"
                continue
            up = time.monotonic()
            while not traffic.accepted_since(up, 1.0) and time.monotonic() < up + 7:
                time.sleep(0.1)
        outcomes[name] = outcome(traffic, down, up, name not in ABLE_TO_STORE)
        not_accepted = [r.sent for r in traffic.replies if r.status != 202 and r.sent >= up]
        slowest_503 = max((r.elapsed or 0 for r in traffic.replies if r.status == 503), default=0)
        recovery[name] = {
            "503s": sum(r.status == 503 for r in traffic.replies),
            "slowest 503 (s)": round(slowest_503, 3),
            "last non-202 after the database was back (s)": round(
                max(not_accepted, default=up) - up, 2
            ),
        }
        accepted = {e for r in traffic.replies if r.status == 202 for e in r.events}
        assert accepted - inbox_ids(stack.url) == set(), name  # every 202 is stored
    print(json.dumps(recovery, indent=1))
    assert outcomes == dict.fromkeys(FAULTS, EXPECTED), json.dumps(outcomes, indent=1)


@pytest.mark.timeout(60)
def test_sigterm_while_the_database_hangs_stops_the_server_within_its_grace_period(
    server: Server, stack: Stack
) -> None:
    with Traffic(server) as traffic:
        warm_up(traffic, stack)
        with stack.pg.paused():
            time.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(timeout=GRACE_S + 2)
            stopped_after = time.monotonic() - started
    print(f"stopped {stopped_after:.2f} s after SIGTERM")
    # uvicorn re-raises the SIGTERM it caught once it has shut down.
    assert (server.process.returncode, stopped_after < GRACE_S) == (-signal.SIGTERM, True)
