"""Shared plumbing for the benchmarks in this folder (not a benchmark itself).

Throw-away Postgres databases, callwatch child processes started in their own process group and
always stopped again (also on Ctrl-C or SIGTERM), free ports, and the org + source setup through
the public API, the same way tests/conftest.py does it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import redis
from sqlalchemy import Engine, create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/5"
ADMIN_TOKEN = "adm_bench_token"
SECRET_KEY = "bench-secret-key"


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C, so every `with` block below gets to clean up."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)


@contextlib.contextmanager
def temp_database(
    server_url: str = DEFAULT_PG, prefix: str = "bench", checkout: Path | None = None
) -> Iterator[str]:
    """A fresh Postgres database, migrated by this checkout or by `checkout` (its own schema);
    dropped (WITH FORCE) on exit."""
    from callwatch.migrate import upgrade

    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = server_url.rsplit("/", 1)[0] + "/" + name
        try:
            if checkout is None:
                upgrade(url)
            else:
                env = dict(os.environ, CALLWATCH_DATABASE_URL=url)
                argv = [str(checkout / ".venv/bin/python"), "-m", "callwatch", "migrate"]
                subprocess.run(argv, env=env, cwd=checkout, check=True, stdout=subprocess.DEVNULL)
            yield url
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def engine_for(url: str) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(url))
    try:
        yield engine
    finally:
        engine.dispose()


def wait_workers(redis_url: str, hostnames: list[str], timeout_s: float = 60.0) -> float:
    """Seconds until every named Celery worker answers a ping (it is consuming by then)."""
    from celery import Celery

    began = time.monotonic()
    control = Celery(broker=redis_url).control
    waiting = set(hostnames)
    while waiting:
        if time.monotonic() - began > timeout_s:
            raise SystemExit(f"workers not ready after {timeout_s:g} s: {sorted(waiting)}")
        for reply in control.ping(destination=sorted(waiting), timeout=0.5):
            waiting -= set(reply)
    return time.monotonic() - began


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def callwatch_env(database_url: str, redis_url: str, public_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CALLWATCH_DATABASE_URL=database_url,
        CALLWATCH_REDIS_URL=redis_url,
        CALLWATCH_ADMIN_TOKEN=ADMIN_TOKEN,
        CALLWATCH_SECRET_KEY=SECRET_KEY,
        CALLWATCH_PUBLIC_URL=public_url,
        CALLWATCH_LOG_LEVEL="WARNING",
        # The simulated platform APIs (bench/pipeline.py, worker_cpu.py) are on loopback.
        CALLWATCH_ALLOW_PRIVATE_TARGETS="true",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def child(
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    *,
    grace_s: float = 10.0,
    cwd: Path = ROOT,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` in its own process group; SIGTERM (then SIGKILL) that group on exit."""
    process = subprocess.Popen(list(argv), cwd=cwd, env=env, start_new_session=True)
    try:
        yield process
    finally:
        stop_child(process, grace_s)


def stop_child(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Reap anything the child left behind in its group (e.g. pool processes).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout_s} s")


def serve(
    env: dict[str, str], port: int, checkout: Path | None = None
) -> contextlib.AbstractContextManager[Any]:
    """`callwatch serve` from this checkout, or from another one with its own `.venv`."""
    python = PYTHON if checkout is None else str(checkout / ".venv/bin/python")
    argv = [python, "-m", "callwatch", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return child(argv, env, cwd=checkout or ROOT)


def create_source(
    base_url: str, settings: dict[str, Any] | None = None, name: str = "bench"
) -> tuple[str, str]:
    """Create an org and a generic source, both called `name`; returns (webhook_url,
    webhook_secret)."""
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        response = client.post("/api/admin/orgs", json={"name": name}, headers=admin)
        response.raise_for_status()
        key = response.json()["api_key"]
        payload = {"name": name, "provider": "generic", "settings": settings or {}}
        response = client.post(
            "/api/sources", json=payload, headers={"authorization": f"Bearer {key}"}
        )
        response.raise_for_status()
        source = response.json()
    # `bench/ab.py` may run a checkout from before the secret had one name (`signing_secret`).
    return source["webhook_url"], source.get("webhook_secret") or source["signing_secret"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc), 0.0 if unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def descendants(pid: int) -> list[int]:
    """The pids of a process's children, grandchildren and so on (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


class RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request in flight: a load generator that costs
    a fraction of httpx's CPU, so the server and not the client is what gets measured."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        marker = head.find(b"\r\ncontent-length:")
        if marker < 0:
            waiter.set_exception(ConnectionError("response without content-length"))
            return
        stop = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        del self.buffer[:total]
        waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed"))

    async def request(self, data: bytes) -> int:
        if self.transport is None:
            raise ConnectionError("not connected")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        _, protocol = await asyncio.get_running_loop().create_connection(cls, host, port)
        return protocol


def signed_webhooks(secret: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
    """Distinct signed generic `call.status_changed` webhooks (body, headers), the shape
    simulator.events_for produces, stamped now (the Standard Webhooks window is ±5 min)."""
    import json

    from callwatch import signatures

    now = time.time()
    stamp = int(now)
    at = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    out = []
    for index in range(count):
        body = {
            "type": "call.status_changed",
            "timestamp": at,
            "data": {
                "call_id": str(uuid.uuid4()),
                "status": "initiated",
                "agent_id": "sales-bot",
                "agent_name": "Sales bot",
                "direction": "outbound",
                "from_number": "+15550001111",
                "to_number": f"+1555{index % 10**7:07d}",
                "campaign_id": "spring-promo",
                "metadata": {},
            },
        }
        content = json.dumps(body, separators=(",", ":")).encode()
        headers = {"content-type": "application/json"}
        headers |= signatures.headers(secret, f"msg_{uuid.uuid4().hex}", stamp, content)
        out.append((content, headers))
    return out


def bare_app() -> Any:
    """The baseline: a bare Starlette app answering the webhook path with 200 "ok"."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/webhooks/{webhook_token}", ok, methods=["POST"])])


def raw_request(url: str, content: bytes, headers: dict[str, str]) -> bytes:
    """The bytes of an HTTP/1.1 keep-alive POST of `content` to `url`."""
    parts = urlsplit(url)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
        f"content-length: {len(content)}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + "\r\n"
    )
    return head.encode() + content


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def run_main(bench: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a benchmark so that Ctrl-C or SIGTERM still stops children and drops the database."""
    install_signal_handlers()
    try:
        return bench(args)
    except KeyboardInterrupt:
        print("interrupted; children stopped and database dropped", file=sys.stderr)
        return 130
