"""The retention purge against a real database, Redis and recording store; once through a real
Celery worker."""

from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from starlette.testclient import TestClient

from callwatch.calls import rollups
from callwatch.retention import purge
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.tables import InboxEvent, OrgSettings
from tests.calls.test_rollups import rollup_rows
from tests.factories import Tenant, eventually, tenant
from tests.retention.conftest import full_call, inbox_row, left_of

NOTHING = {"calls": 0, "events": 0, "archives": 0, "deliveries": 0, "alerts": 0, "files": 0}
WHOLE = {"calls": 1, "events": 2, "archives": 1, "deliveries": 1, "alerts": 1, "files": 1}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"purge_batch": 2, "purge_rest": 0.0})


def keep_for(client: TestClient, owner: Tenant, **days: Any) -> None:
    response = client.patch("/api/settings", json=days, headers=owner.headers)
    assert response.status_code == 200, response.text


def rebuilt(rt: Runtime) -> list[dict[str, Any]]:
    with rt.sessions.begin() as session:
        rollups.forget(session)
    after = ""
    while True:
        with rt.sessions.begin() as session:
            added = rollups.add_batch(session, None, after, 100)
        if not added:
            return rollup_rows(rt)
        after = added[-1]


def scraped(client: TestClient, name: str) -> dict[str, float]:
    return {
        sample.labels.get("kind", ""): sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        if family.name == name
        for sample in family.samples
    }


def test_calls_past_their_orgs_retention_go_with_everything_theirs(
    client: TestClient, runtime: Runtime
) -> None:
    now = runtime.clock()
    acme, keeper = tenant(client, "acme"), tenant(client, "keeper")
    keep_for(client, acme, retention_days=30)
    old = [
        full_call(runtime, acme, f"old-{n}", now - timedelta(days=31, hours=n)) for n in range(5)
    ]
    recent = [full_call(runtime, acme, "recent", now - timedelta(days=29))]
    kept = [full_call(runtime, keeper, "keeper-old", now - timedelta(days=400))]

    purged = purge.run(runtime)

    # The keeper's old call stays, its raw bodies emptied after the default 30 days.
    assert purged == purge.Purged(
        calls=5, events=10, raw_bodies=2, recordings=5, deliveries=5, alerts=5
    )
    assert left_of(runtime, acme, old) == NOTHING
    assert left_of(runtime, acme, recent) == WHOLE
    assert left_of(runtime, keeper, kept) == WHOLE
    assert rollup_rows(runtime) == rebuilt(runtime)  # the purged calls' shares went with them
    assert purge.run(runtime) == purge.Purged()
    assert scraped(client, "callwatch_purged") == {
        "calls": 5,
        "events": 10,
        "raw_bodies": 2,
        "recordings": 5,
        "deliveries": 5,
        "alerts": 5,
    }


def test_raw_bodies_past_their_retention_are_emptied_and_never_walked_again(
    client: TestClient, runtime: Runtime
) -> None:
    now = runtime.clock()
    owner = tenant(client, "acme")  # never chose: raw bodies are kept 30 days
    applied = [inbox_row(owner, now - timedelta(days=31, minutes=n), "c1") for n in range(3)]
    quarantined = inbox_row(owner, now - timedelta(days=40), quarantined_at=now, last_error="x")
    waiting = inbox_row(owner, now - timedelta(days=35), processed_at=now)  # a join, never met
    fresh = inbox_row(owner, now - timedelta(days=29), "c1")
    with runtime.sessions.begin() as session:
        session.add_all([*applied, quarantined, waiting, fresh])
    ids = [row.id for row in applied]

    purged = purge.run(runtime)

    with runtime.sessions() as session:
        bodies = {row.id: row.raw_body for row in session.scalars(select(InboxEvent))}
        events = {
            row_id: event
            for row_id, event in session.execute(select(InboxEvent.id, InboxEvent.event))
        }
        mark = session.scalar(select(OrgSettings.raw_purged_through))
    assert purged == purge.Purged(raw_bodies=3, events=2)
    assert bodies == {**{row_id: "" for row_id in ids}, fresh.id: fresh.raw_body}
    assert events[ids[0]] == applied[0].event  # the parsed event stays with its call
    assert mark == max(ids)
    assert purge.run(runtime) == purge.Purged()


def test_an_org_that_keeps_everything_loses_nothing(client: TestClient, runtime: Runtime) -> None:
    now = runtime.clock()
    owner = tenant(client, "acme")
    keep_for(client, owner, retention_days=None, raw_event_retention_days=None)
    calls = [full_call(runtime, owner, "ancient", now - timedelta(days=3650))]

    assert purge.run(runtime) == purge.Purged()
    assert left_of(runtime, owner, calls) == WHOLE


def test_a_run_stops_at_its_budget_and_the_next_goes_on(
    client: TestClient, runtime: Runtime, settings: Settings
) -> None:
    now = runtime.clock()
    owner = tenant(client, "acme")
    keep_for(client, owner, retention_days=1)
    calls = [
        full_call(runtime, owner, f"c{n}", now - timedelta(days=2, minutes=n)) for n in range(4)
    ]
    heard: list[purge.Purged] = []
    short = Runtime.start(settings.model_copy(update={"purge_budget_s": 0.001}))
    try:
        first = purge.run(short, on_batch=heard.append)
    finally:
        short.close()

    assert (first.calls, heard) == (2, [first])  # one batch, then the budget was spent
    assert purge.run(runtime).calls == 2
    assert left_of(runtime, owner, calls)["calls"] == 0


def test_the_purge_task_runs_in_a_real_worker_one_run_at_a_time(
    client: TestClient, runtime: Runtime, worker: None
) -> None:
    from callwatch.downstream.streams import HEARTBEATS
    from workers import tasks

    now = runtime.clock()
    owner = tenant(client, "acme")
    keep_for(client, owner, retention_days=1)
    calls = [full_call(runtime, owner, "old", now - timedelta(days=2))]
    assert runtime.redis is not None
    held = runtime.redis.lock(purge.RUNNING, timeout=60)
    assert held.acquire(blocking=False)
    ran_beside = purge.run_alone(runtime)
    unpurged = left_of(runtime, owner, calls)["calls"]
    held.release()

    tasks.purge.delay()

    eventually(lambda: left_of(runtime, owner, calls) == NOTHING)
    eventually(lambda: runtime.redis is not None and runtime.redis.hexists(HEARTBEATS, "purge"))
    assert (ran_beside, unpurged) == (False, 1)
