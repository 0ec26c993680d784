"""Losing Redis, killing a worker, losing the database: nothing accepted is lost (design.md §2)."""

import json
import os
import signal
import time
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from sqlalchemy import func, select
from starlette.testclient import TestClient

from callwatch.app import create_app
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.simulator import DetailServer, events_for
from callwatch.tables import Call
from tests.conftest import create_org, create_source, make_settings, path_of, signed
from tests.factories import eventually, worker_process
from tests.pipeline.test_steps import hand_call
from workers.app import app as celery_app
from workers.app import configure
from workers.tasks import sweep


def send_all(client: TestClient, source: dict[str, Any], bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        raw = json.dumps(body).encode()
        response = client.post(
            path_of(source["webhook_url"]),
            content=raw,
            headers=signed(source["webhook_secret"], raw),
        )
        assert response.status_code == 202


def calls_in(runtime: Runtime) -> list[tuple[str, int]]:
    with runtime.sessions() as session:
        return [(c.assembly_state, c.assembly_attempts) for c in session.scalars(select(Call))]


def in_thread_worker(settings: Settings, runtime: Runtime) -> Any:
    configure(celery_app, settings)
    celery_app.runtime = runtime
    return start_worker(
        celery_app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30
    )


def test_flushall_right_after_the_202_still_assembles(client, settings, runtime) -> None:
    key = create_org(client)
    with DetailServer() as server:
        source = create_source(client, key, settings={"detail_url": server.detail_url})
        call = hand_call("flushed-1")
        server.add(call)
        send_all(client, source, events_for(call, embed_detail=False))
        time.sleep(0.2)  # ten times the intake's linger: every message has reached Redis
        redis.Redis.from_url(settings.broker_url).flushall()
        with in_thread_worker(settings, runtime):
            time.sleep(0.5)
            assert calls_in(runtime) == []  # the queue messages really are gone
            sweep.delay()
            eventually(lambda: calls_in(runtime) == [("assembled", 1)])
    celery_app.runtime = None


@pytest.mark.slow
def test_worker_sigkilled_mid_assembly_still_assembles_once(
    client, settings, runtime, tmp_path
) -> None:
    key = create_org(client)
    with DetailServer() as server:
        source = create_source(client, key, settings={"detail_url": server.detail_url})
        call = hand_call("killed-1")
        server.add(call, hang_first_s=30)
        log = (tmp_path / "worker.log").open("wb")
        doomed = worker_process(settings, log, lease_s=str(settings.lease_s))
        try:
            send_all(client, source, events_for(call, embed_detail=False))
            eventually(lambda: server.requests(call.call_id) == 1, timeout=30)
        finally:
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait()
            log.close()
        assert calls_in(runtime) == [("fetching", 1)]
        with in_thread_worker(settings, runtime):
            time.sleep(settings.lease_s)  # the dead run's lease must lapse first
            sweep.delay()
            eventually(lambda: calls_in(runtime) == [("assembled", 2)])
        assert server.requests(call.call_id) == 2
    celery_app.runtime = None
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 1


def test_database_unreachable_is_503(settings, tmp_path) -> None:
    broken = "sqlite:////nonexistent/dir/callwatch.db"
    if settings.database_url.startswith("postgresql"):
        broken = "postgresql://postgres@127.0.0.1:1/test"
    dead = make_settings(broken, settings.broker_url, tmp_path)
    with TestClient(create_app(dead), raise_server_exceptions=False) as client:
        response = client.post("/webhooks/some-token", content=b"{}")
        ready = client.get("/readyz")
    assert (response.status_code, response.headers["content-type"]) == (
        503,
        "application/problem+json",
    )
    assert response.headers["retry-after"] == "5"
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] == "ok"


def test_database_lost_after_the_source_lookup_is_503(settings, tmp_path) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("the write lock is an SQLite way to make the database unavailable")
    import sqlite3

    cached = make_settings(settings.database_url, settings.broker_url, tmp_path, source_cache_s=60)
    with TestClient(create_app(cached), raise_server_exceptions=False) as client:
        source = create_source(client, create_org(client))
        body = json.dumps(events_for(hand_call("locked-1"), embed_detail=False)[0]).encode()
        first = client.post(
            path_of(source["webhook_url"]),
            content=body,
            headers=signed(source["webhook_secret"], body),
        )
        assert first.status_code == 202
        blocker = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            response = client.post(
                path_of(source["webhook_url"]),
                content=body,
                headers=signed(source["webhook_secret"], body),
            )
        finally:
            blocker.rollback()
            blocker.close()
    assert response.status_code == 503


def test_intake_losing_its_connection_fails_one_request(settings, tmp_path) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("terminating a backend is a Postgres way to lose intake's connection")
    import psycopg

    from callwatch.intake.receiver import APPLICATION_NAME

    cached = make_settings(settings.database_url, settings.broker_url, tmp_path, source_cache_s=60)
    with TestClient(create_app(cached), raise_server_exceptions=False) as client:
        source = create_source(client, create_org(client))

        def post(call_id: str) -> int:
            body = json.dumps(events_for(hand_call(call_id), embed_detail=False)[0]).encode()
            headers = signed(source["webhook_secret"], body, msg_id=f"m-{call_id}")
            return client.post(
                path_of(source["webhook_url"]), content=body, headers=headers
            ).status_code

        before = post("before")
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = current_database()",
                [APPLICATION_NAME],
            )
        during, retried = post("during"), post("during")
    assert [before, during, retried] == [202, 503, 202]
