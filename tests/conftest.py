"""Fixtures on real parts: a real Redis, a real database (SQLite or Postgres), a real worker.

CALLWATCH_TEST_DATABASE: `sqlite` (default) or a Postgres URL whose server may create databases.
CALLWATCH_TEST_REDIS_URL: a Redis to use (its db is flushed); unset → an embedded redis-server.
"""

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from celery.contrib.testing.worker import start_worker
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from callwatch import migrate, signatures, tracing
from callwatch.app import create_app
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.tables import Base

ADMIN = "adm_test_token"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("CALLWATCH_TEST_REDIS_URL")
    if given:
        yield given
        return
    from callwatch.cli.embedded import EmbeddedRedis

    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    target = os.environ.get("CALLWATCH_TEST_DATABASE", "sqlite")
    if target == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'callwatch.db'}"
        migrate.upgrade(url)
        yield url
        return
    name = f"callwatch_test_{secrets.token_hex(4)}"
    admin = create_engine(
        target.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = target.rsplit("/", 1)[0] + "/" + name
    migrate.upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def make_settings(database_url: str, redis_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "admin_token": SecretStr(ADMIN),
        "secret_key": SecretStr("test-secret-key"),
        "public_url": "http://testserver",
        "data_dir": data_dir,
        "recording_wait_s": 2.0,
        "recording_check_min_s": 0.2,
        "recording_check_max_s": 0.5,
        "fetch_backoff_base_s": 0.1,
        "fetch_max_failures": 3,
        "lease_s": 3.0,
        "fetch_deadline_s": 2.0,  # below the lease
        # The simulator's platform APIs and the receivers are on loopback; the guard's tests
        # turn this off.
        "allow_private_targets": True,
        "sweep_grace_s": 0.0,
        # Off but where a test is about the archive (tests/recordings): a record's copy made
        # by a worker, at its own pace, is no part of what the other tests compare.
        "archive_recordings": False,
        "source_cache_s": 0.0,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Settings]:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()
    redis.Redis.from_url(redis_url).flushdb()
    return make_settings(database_url, redis_url, tmp_path)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.start(settings)
    yield rt
    rt.close()


@pytest.fixture
def postgres(settings: Settings) -> str:
    """The test database's URL, for tests of a Postgres-only path (skipped on SQLite)."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("a Postgres-only path")
    return settings.database_url


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def worker(settings: Settings, runtime: Runtime) -> Iterator[None]:
    """A real Celery worker consuming from the real Redis, in a thread of this process."""
    from workers.app import app, configure

    configure(app, settings)
    app.runtime = runtime
    with start_worker(
        app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30
    ):
        yield
    app.runtime = None


def create_org(client: TestClient, name: str = "acme") -> str:
    response = client.post(
        "/api/admin/orgs", json={"name": name}, headers={"authorization": f"Bearer {ADMIN}"}
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["api_key"]
    return key


def create_source(client: TestClient, api_key: str, **body: Any) -> dict[str, Any]:
    payload = {"name": "gen", "provider": "generic", **body}
    response = client.post(
        "/api/sources", json=payload, headers={"authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()
    return source


def signed(
    secret: str, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    import time

    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        **signatures.headers(secret, msg_id or f"msg_{secrets.token_hex(8)}", stamp, body),
    }


def path_of(webhook_url: str) -> str:
    return "/webhooks/" + webhook_url.rsplit("/", 1)[1]


@dataclass(frozen=True)
class S3Server:
    """moto's standalone S3-compatible server on a loopback port, with a bucket of its own."""

    endpoint_url: str
    bucket: str

    def settings(self, settings: Settings, prefix: str = "archive") -> Settings:
        """These settings, with the recording store in this server's bucket."""
        return settings.model_copy(
            update={
                "recordings_url": f"s3://{self.bucket}/{prefix}",
                "recordings_endpoint_url": self.endpoint_url,
                "recordings_region": "us-east-1",
                "recordings_access_key_id": SecretStr("testing"),
                "recordings_secret_access_key": SecretStr("testing"),
            }
        )

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3 API (moto's ThreadedMotoServer), never a mocked client."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    found = S3Server(f"http://{host}:{port}", "callwatch-recordings")
    found.client().create_bucket(Bucket=found.bucket)
    yield found
    server.stop()


_PROVIDER: TracerProvider | None = None
_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory: the finished spans of this test (OpenTelemetry's provider is set
    once per process, so one serves every test; off again after the test)."""
    global _PROVIDER
    if _PROVIDER is None:
        _PROVIDER = TracerProvider()
        _PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    _EXPORTER.clear()
    tracing.install(_PROVIDER)
    yield _EXPORTER
    tracing.uninstall()
