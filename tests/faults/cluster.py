"""Databases of a fault test's own, to crash at will: a Postgres cluster and a redis-server.

The shared Postgres and Redis of the machine must never be stopped or killed, so a fault test
starts its own on free loopback ports, in a temporary folder, and removes them at the end.

    with postgres_cluster() as pg:        # skips the test if initdb is missing
        url = pg.create_database("callwatch")
        pg.stop_immediate(); pg.start()   # a crash: no shutdown checkpoint, crash recovery
        pg.kill_backend("callwatch-intake")  # kill -9: the postmaster resets every connection
        pg.terminate_backends("callwatch-intake")  # pg_terminate_backend: one clean FATAL
        with pg.paused(): ...             # SIGSTOP: a database that hangs (or one backend)

    with redis_server() as rs:            # skips the test if redis-server is missing
        rs.url(3); rs.shutdown_nosave(); rs.start(); rs.kill()

Postgres refuses to run as root: as root the cluster is initialised and run as the `postgres`
user through `runuser`, in a folder it owns (outside pytest's tmp_path, which root keeps 0700).
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

PG_BIN_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14")]
READY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pg_bin_dir() -> Path | None:
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    return next((d for d in PG_BIN_DIRS if (d / "initdb").is_file()), None)


class PostgresCluster:
    """A Postgres cluster on 127.0.0.1:`port` with trust authentication for user `postgres`."""

    def __init__(self, bin_dir: Path, root: Path, port: int, run_as: str | None) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.port = port
        self._run_as = run_as

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E",
            "UTF8", "--locale=C",
        )  # fmt: skip
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "60",
            "shared_buffers": "32MB",
            "fsync": "off",  # the OS keeps what a crashed server wrote; only an OS crash loses it
            "full_page_writes": "off",
            "logging_collector": "off",
        }
        with (self.data / "postgresql.auto.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        """Start the server (if it is not running) and wait until it accepts connections."""
        if self.running:
            return
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start")
        self.wait_ready()

    @property
    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False) == 0

    def stop_immediate(self) -> None:
        """Stop as a crash does: every backend killed, no checkpoint; start() recovers."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def backend_pids(self, application_name: str) -> list[int]:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s ORDER BY pid",
                [application_name],
            ).fetchall()
        return [int(row[0]) for row in rows]

    def kill_backend(self, application_name: str) -> int:
        """kill -9 one backend of `application_name`: the postmaster then resets every
        connection and recovers; returns the pid killed."""
        pids = self.backend_pids(application_name)
        if not pids:
            raise LookupError(f"no backend of {application_name!r} to kill")
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def terminate_backends(self, application_name: str) -> int:
        """pg_terminate_backend for every backend of `application_name`; how many it ended."""
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s",
                [application_name],
            ).fetchone()
        return int(row[0]) if row else 0

    @contextlib.contextmanager
    def paused(self, application_name: str | None = None) -> Iterator[list[int]]:
        """SIGSTOP one backend of `application_name` (or the whole server: postmaster and every
        backend) until the block ends: a database that stops answering without closing."""
        if application_name is None:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
            pids = [postmaster, *_children(postmaster)]
        else:
            pids = self.backend_pids(application_name)[:1]
            if not pids:
                raise LookupError(f"no backend of {application_name!r} to pause")
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield pids
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def _run(self, binary: str, *args: str, check: bool = True) -> int:
        command = [str(self.bin_dir / binary), *args]
        if self._run_as:
            command = ["runuser", "-u", self._run_as, "--", *command]
        result = subprocess.run(command, capture_output=True, check=False, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{binary} failed: {result.stderr.decode(errors='replace')}")
        return result.returncode


def _children(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                children.append(int(stat.parent.name))
    return children


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A started cluster of the test's own (skips the test when Postgres is not installed)."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        pytest.skip("initdb not found: a fault test needs a Postgres cluster of its own")
    run_as = None
    root = Path(tempfile.mkdtemp(prefix="callwatch-pg-"))
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot run Postgres as non-root")
        run_as = "postgres"
        try:
            shutil.chown(root, user=run_as, group=None)
        except LookupError:
            pytest.skip("running as root and there is no `postgres` user to run Postgres as")
    cluster = PostgresCluster(bin_dir, root, free_port(), run_as)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


class RedisServer:
    """redis-server on 127.0.0.1:`port`, no persistence, that can be stopped and started again."""

    def __init__(self, binary: str, root: Path, port: int) -> None:
        self.binary = binary
        self.root = root
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        log = (self.root / "redis.log").open("ab")
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no"],
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise
                time.sleep(0.02)

    def shutdown_nosave(self) -> None:
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(port=self.port).shutdown(nosave=True)
        self._wait()

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self._wait()

    def _wait(self) -> None:
        if self._process is not None:
            self._process.wait(timeout=10)
            self._process = None


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started redis-server of the test's own (skips the test when it is not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not found: a fault test needs a Redis of its own")
    root = Path(tempfile.mkdtemp(prefix="callwatch-redis-"))
    server = RedisServer(binary, root, free_port())
    try:
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)
