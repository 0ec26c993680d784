"""callwatch as it is deployed (Procfile): web, two workers and beat as child processes.

Each runs in its own process group with its output in a log file of the run, can be SIGKILLed
and started again as a supervisor would, and is stopped (SIGTERM, then SIGKILL) at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_TOKEN = "adm_faults_token"
SECRET_KEY = "faults-secret-key"
WORKER_THREADS = 8
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
SUPERVISE_EVERY_S = 0.5

# Short timings so that recovery (a lost queue message, a killed worker's lease, a recording
# still pending) happens within the run; the production defaults are minutes.
KNOBS = {
    "CALLWATCH_SWEEP_INTERVAL_S": "1",
    "CALLWATCH_SWEEP_GRACE_S": "3",
    "CALLWATCH_LEASE_S": "15",
    "CALLWATCH_FETCH_DEADLINE_S": "10",  # below the lease
    "CALLWATCH_HTTP_TIMEOUT_S": "5",
    "CALLWATCH_RECORDING_WAIT_S": "20",
    "CALLWATCH_RECORDING_CHECK_MIN_S": "0.5",
    "CALLWATCH_RECORDING_CHECK_MAX_S": "1",
    "CALLWATCH_FETCH_BACKOFF_BASE_S": "0.5",
    "CALLWATCH_MATCH_WAIT_S": "20",
    "CALLWATCH_SOURCE_CACHE_S": "30",
    "CALLWATCH_VISIBILITY_TIMEOUT_S": "60",
    # The simulator's detail APIs are on loopback.
    "CALLWATCH_ALLOW_PRIVATE_TARGETS": "true",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(
    database_url: str, redis_url: str, public_url: str, data_dir: Path
) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CALLWATCH_", "PYTEST_"))
    }
    env.update(
        KNOBS,
        CALLWATCH_DATABASE_URL=database_url,
        CALLWATCH_REDIS_URL=redis_url,
        CALLWATCH_ADMIN_TOKEN=ADMIN_TOKEN,
        CALLWATCH_SECRET_KEY=SECRET_KEY,
        CALLWATCH_PUBLIC_URL=public_url,
        CALLWATCH_DATA_DIR=str(data_dir),
        CALLWATCH_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Service:
    """One long-running callwatch command."""

    name: str
    argv: list[str]
    env: dict[str, str]
    logs: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    killing: bool = False

    def start(self) -> None:
        self.starts += 1
        self.killing = False
        log = (self.logs / f"{self.name}.log").open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no goodbye to Redis or Postgres."""
        assert self.process is not None
        self.kills += 1
        self.killing = True  # the fault restarts it, not the supervisor
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after the grace period; the exit code, None if it was killed."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.returncode

    def log_tail(self, lines: int = 40) -> str:
        path = self.logs / f"{self.name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def callwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "callwatch", *args]


@dataclass
class Stack:
    env: dict[str, str]
    port: int
    logs: Path
    wanted: tuple[str, ...] = ("web", "worker-1", "worker-2", "beat")
    services: dict[str, Service] = field(default_factory=dict)
    # Processes that exited by themselves (a Celery worker can, when Redis goes away while it
    # starts), each with its last log line: restarted, as a supervisor's restart policy does.
    exits: list[str] = field(default_factory=list)
    _supervising: threading.Event = field(default_factory=threading.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hostname(self, number: int) -> str:
        return f"faults-{number}-{os.getpid()}@{socket.gethostname()}"

    def start(self) -> None:
        subprocess.run(
            callwatch("migrate"), env=self.env, check=True, stdout=subprocess.DEVNULL, timeout=120
        )
        # The shipped server configuration: `callwatch serve` (uvicorn[standard]: uvloop,
        # httptools), as the Procfile runs it.
        web = callwatch("serve", "--host", "127.0.0.1", "--port", str(self.port))
        commands = {
            "web": web,
            "worker-1": callwatch(
                "worker", "--concurrency", str(WORKER_THREADS), "--hostname", self.hostname(1)
            ),
            "worker-2": callwatch(
                "worker", "--concurrency", str(WORKER_THREADS), "--hostname", self.hostname(2)
            ),
            "beat": callwatch("beat"),
        }
        for name in self.wanted:
            self.services[name] = Service(name, commands[name], self.env, self.logs)
            self.services[name].start()
        self.wait_web()
        self.wait_workers()
        self._supervising.set()
        threading.Thread(target=self._supervise, daemon=True).start()

    def _supervise(self) -> None:
        while self._supervising.is_set():
            for name, service in list(self.services.items()):
                if self._supervising.is_set() and not service.alive() and not service.killing:
                    self.exits.append(f"{name}: {service.log_tail(1)}")
                    service.start()
            time.sleep(SUPERVISE_EVERY_S)

    def wait_web(self, timeout_s: float = START_TIMEOUT_S) -> None:
        web = self.services["web"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not web.alive():
                raise RuntimeError(f"web exited:\n{web.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/healthz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"web not up after {timeout_s:g} s:\n{web.log_tail()}")

    def wait_workers(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until both workers answer a ping: they consume from then on."""
        from celery import Celery

        control = Celery(broker=self.env["CALLWATCH_REDIS_URL"]).control
        waiting = {self.hostname(n) for n in (1, 2) if f"worker-{n}" in self.services}
        deadline = time.monotonic() + timeout_s
        while waiting:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready after {timeout_s:g} s: {sorted(waiting)}")
            for reply in control.ping(destination=sorted(waiting), timeout=0.5) or []:
                waiting -= set(reply)

    def restart(self, name: str) -> None:
        """What a supervisor does when a process dies: start it again."""
        self.services[name].start()
        if name == "web":
            self.wait_web()

    def stop(self) -> dict[str, int | None]:
        self._supervising.clear()
        return {name: service.stop() for name, service in self.services.items()}

    def dead(self) -> list[str]:
        return [name for name, service in self.services.items() if not service.alive()]


def admin_headers() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN_TOKEN}"}


def create_org(base_url: str, name: str) -> str:
    response = httpx.post(
        base_url + "/api/admin/orgs", json={"name": name}, headers=admin_headers(), timeout=10
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["api_key"]
    return key


def create_source(base_url: str, api_key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        base_url + "/api/sources",
        json=body,
        headers={"authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()
    return source


@contextlib.contextmanager
def running(
    env: dict[str, str], port: int, logs: Path, wanted: tuple[str, ...] = Stack.wanted
) -> Iterator[Stack]:
    stack = Stack(env, port, logs, wanted)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
