"""The web process and its intake process: a 202 only after the commit, whatever dies when."""

import json
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from callwatch.app import create_app
from callwatch.intake import APPLICATION_NAME
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.tables import InboxEvent
from tests.conftest import create_org, create_source, make_settings, path_of, signed
from tests.factories import eventually


def intake_pid(client: TestClient) -> int:
    pid = client.app.state.services.intake.pid()  # type: ignore[attr-defined]
    assert isinstance(pid, int)
    return pid


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@contextmanager
def inbox_locked(settings: Settings) -> Iterator[Callable[[], bool]]:
    """Hold a lock that makes inbox writes wait; yields "is intake waiting on it yet?"."""
    url = settings.database_url
    if url.startswith("sqlite"):
        blocker = sqlite3.connect(url.removeprefix("sqlite:///"))
        blocker.execute("BEGIN EXCLUSIVE")
        began = time.monotonic()
        try:
            yield lambda: time.monotonic() - began > 0.5  # SQLite cannot show who waits
        finally:
            blocker.rollback()
            blocker.close()
        return
    with psycopg.connect(url) as blocker, psycopg.connect(url, autocommit=True) as observer:
        blocker.execute("LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE")
        waiting = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = %s AND wait_event_type = 'Lock'"
        )
        yield lambda: observer.execute(waiting, [APPLICATION_NAME]).fetchone() == (1,)
        blocker.rollback()


def stored(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(InboxEvent)) or 0


def webhook(client: TestClient, source: dict[str, Any], call_id: str) -> dict[str, Any]:
    body = json.dumps(
        {
            "type": "call.status_changed",
            "timestamp": "2026-11-01T12:00:00Z",
            "data": {"call_id": call_id, "status": "ringing"},
        }
    ).encode()
    headers = signed(source["signing_secret"], body)
    return {"url": path_of(source["webhook_url"]), "content": body, "headers": headers}


def test_intake_killed_mid_write_means_503_and_the_retry_is_stored_once(
    settings: Settings, runtime: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The source stays cached: on SQLite the lock below would hold up its look-up too.
    cached = make_settings(settings.database_url, settings.broker_url, tmp_path, source_cache_s=60)
    with TestClient(create_app(cached), raise_server_exceptions=False) as client:
        source = create_source(client, create_org(client))
        assert client.post(**webhook(client, source, "p-0")).status_code == 202
        request = webhook(client, source, "p-1")
        first_intake = intake_pid(client)

        # callwatch's loggers do not propagate (logs.py), so listen on this one directly.
        logging.getLogger("callwatch.intake").addHandler(caplog.handler)
        with ThreadPoolExecutor(1) as pool, inbox_locked(settings) as intake_waits:
            pending = pool.submit(client.post, **request)
            eventually(intake_waits)
            os.kill(first_intake, signal.SIGKILL)
            lost = pending.result(timeout=10)
        logging.getLogger("callwatch.intake").removeHandler(caplog.handler)

        assert lost.status_code == 503
        assert "the intake process exited; the next webhook starts another" in caplog.messages
        assert stored(runtime) == 1  # the killed transaction left nothing behind
        retried = client.post(**request)
        again = client.post(**request)
        assert [retried.status_code, retried.json()["status"]] == [202, "accepted"]
        assert again.json() == {"status": "duplicate"}
        assert stored(runtime) == 2
        assert intake_pid(client) != first_intake


def test_intake_stops_with_the_app(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        pid = intake_pid(client)
        assert not gone(pid)

    eventually(lambda: gone(pid))
