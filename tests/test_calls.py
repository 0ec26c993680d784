"""Applying stored events to calls in batches, without a worker: the transaction is the test's."""

import dataclasses
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from callwatch import pipeline
from callwatch.effects import Effects
from callwatch.events import CallFields
from callwatch.runtime import Runtime
from callwatch.tables import Call, InboxEvent
from tests.conftest import create_org, create_source, path_of, signed


def status_event(call_id: str, status: str, at: str) -> dict[str, Any]:
    return {
        "type": "call.status_changed",
        "timestamp": at,
        "data": {"call_id": call_id, "status": status, "agent_id": "bot"},
    }


def post(client: TestClient, source: dict[str, Any], body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    response = client.post(
        path_of(source["webhook_url"]), content=raw, headers=signed(source["signing_secret"], raw)
    )
    assert response.status_code == 202, response.text


def call_statuses(runtime: Runtime) -> dict[str, str | None]:
    with runtime.sessions() as session:
        rows = session.execute(select(Call.provider_call_id, Call.status))
        return {call_id: status for call_id, status in rows}


def inbox_ids(runtime: Runtime) -> list[str]:
    with runtime.sessions() as session:
        return list(session.scalars(select(InboxEvent.id).order_by(InboxEvent.id)))


def unapplied(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        rows = session.scalars(select(InboxEvent.id).where(InboxEvent.processed_at.is_(None)))
        return len(rows.all())


def test_one_batch_applies_the_events_of_several_calls(
    client: TestClient, runtime: Runtime
) -> None:
    source = create_source(client, create_org(client))
    post(client, source, status_event("a", "ringing", "2026-11-20T10:00:02Z"))
    post(client, source, status_event("b", "initiated", "2026-11-20T10:00:00Z"))
    post(client, source, status_event("a", "initiated", "2026-11-20T10:00:00Z"))
    post(client, source, status_event("a", "in_progress", "2026-11-20T10:00:05Z"))
    ids = inbox_ids(runtime)

    ingested = pipeline.ingest(runtime, ids + ids[:2])  # a repeated id is applied once

    assert ingested.ready == []
    assert call_statuses(runtime) == {"a": "in_progress", "b": "initiated"}
    assert unapplied(runtime) == 0


def test_a_batch_applied_twice_changes_nothing_the_second_time(
    client: TestClient, runtime: Runtime
) -> None:
    source = create_source(client, create_org(client))
    post(client, source, status_event("a", "initiated", "2026-11-20T10:00:00Z"))
    post(client, source, status_event("a", "completed", "2026-11-20T10:01:00Z"))
    ids = inbox_ids(runtime)

    first = pipeline.ingest(runtime, ids)
    second = pipeline.ingest(runtime, ids)

    assert (len(first.ready), second.ready) == (1, [])
    assert call_statuses(runtime) == {"a": "completed"}


def assembly_of(runtime: Runtime) -> list[tuple[str, int, Any, Any]]:
    with runtime.sessions() as session:
        rows = session.execute(
            select(
                Call.assembly_state,
                Call.assembly_attempts,
                Call.assembly_lease_until,
                Call.assembly_next_at,
            )
        )
        return [tuple(row) for row in rows]


def completed(client: TestClient, source: dict[str, Any]) -> None:
    """Call "a" of the source, from start to end."""
    post(client, source, status_event("a", "initiated", "2026-11-20T10:00:00Z"))
    post(client, source, status_event("a", "completed", "2026-11-20T10:01:00Z"))


def test_the_batch_that_completes_a_call_claims_its_first_assembly_run(
    client: TestClient, runtime: Runtime
) -> None:
    source = create_source(client, create_org(client))
    completed(client, source)

    [claimed] = pipeline.ingest(runtime, inbox_ids(runtime)).ready

    lease = claimed.lease_until
    assert (claimed.source.id, claimed.context.provider_call_id) == (source["id"], "a")
    assert claimed.context.fields == CallFields(agent_id="bot")
    assert assembly_of(runtime) == [("fetching", 1, lease, lease)]


def test_a_claimed_run_whose_lease_ran_out_meanwhile_is_left_to_the_sweeper(
    client: TestClient, runtime: Runtime
) -> None:
    completed(client, create_source(client, create_org(client)))
    [claimed] = pipeline.ingest(runtime, inbox_ids(runtime)).ready
    before = assembly_of(runtime)
    late = dataclasses.replace(runtime, clock=lambda: claimed.lease_until + timedelta(seconds=1))

    step = pipeline.run(late, claimed)

    # No fetch was made (the source has no detail URL: it would have failed the run).
    assert step == pipeline.Step(None, Effects())
    assert assembly_of(runtime) == before
