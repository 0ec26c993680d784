"""Applying stored events to calls in batches, without a worker: the transaction is the test's."""

import dataclasses
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from starlette.testclient import TestClient

from callwatch.calls import store as calls
from callwatch.downstream.effects import Effects
from callwatch.model import call_metrics
from callwatch.model.events import CallFields, CallStatus
from callwatch.model.records import CallDetails
from callwatch.pipeline import steps as pipeline
from callwatch.runtime import Runtime
from callwatch.simulator import DetailServer, SimCall, events_for, make_call
from callwatch.tables import Call, InboxEvent
from tests import factories
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
        path_of(source["webhook_url"]), content=raw, headers=signed(source["webhook_secret"], raw)
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

    steps = pipeline.run(late, [claimed])

    # No fetch was made (the source has no detail URL: it would have failed the run).
    assert steps == pipeline.Steps({}, Effects())
    assert assembly_of(runtime) == before


def answered_calls(count: int) -> list[SimCall]:
    rng = random.Random(7)
    calls: list[SimCall] = []
    while len(calls) < count:
        call = make_call(rng, datetime.now(UTC))
        if call.status == CallStatus.completed:
            calls.append(call)
    return calls


def claimed_runs(
    client: TestClient, runtime: Runtime, server: DetailServer, calls: list[SimCall]
) -> list[pipeline.Claimed]:
    settings = {"detail_url": server.detail_url}
    source = create_source(client, create_org(client), settings=settings)
    for call in calls:
        for body in events_for(call, embed_detail=False):
            post(client, source, body)
    return pipeline.ingest(runtime, inbox_ids(runtime)).ready


def runs_of(runtime: Runtime) -> dict[str, tuple[str, int, str | None]]:
    with runtime.sessions() as session:
        rows = session.execute(
            select(
                Call.provider_call_id,
                Call.assembly_state,
                Call.assembly_failures,
                Call.assembly_last_error,
            )
        )
        return {call_id: (state, failures, error) for call_id, state, failures, error in rows}


def test_claimed_runs_complete_together_and_a_failed_fetch_delays_only_its_call(
    client: TestClient, runtime: Runtime
) -> None:
    first, down, last = answered_calls(3)
    with DetailServer() as server:
        server.add(first)
        server.add(down, always_fail=True)
        server.add(last)
        claimed = claimed_runs(client, runtime, server, [first, down, last])

        steps = pipeline.run(runtime, claimed)

        error = f"GET {server.detail_url.replace('{call_id}', down.call_id)}: HTTP 500"
    assert list(steps.countdowns) == [call_id_of(runtime, down.call_id)]
    assert runs_of(runtime) == {
        first.call_id: ("assembled", 0, None),
        down.call_id: ("fetching", 1, error),
        last.call_id: ("assembled", 0, None),
    }


def test_a_bug_completing_one_claimed_run_fails_only_that_run(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, buggy, last = answered_calls(3)
    compute = call_metrics.compute

    def compute_or_fail(details: CallDetails, **kwargs: Any) -> Any:
        if details.to_number == buggy.to_number:
            raise RuntimeError("bug")
        return compute(details, **kwargs)

    monkeypatch.setattr(call_metrics, "compute", compute_or_fail)
    with DetailServer() as server:
        for call in (first, buggy, last):
            server.add(call)
        claimed = claimed_runs(client, runtime, server, [first, buggy, last])

        steps = pipeline.run(runtime, claimed)

    assert list(steps.countdowns) == [call_id_of(runtime, buggy.call_id)]
    assert runs_of(runtime) == {
        first.call_id: ("assembled", 0, None),
        buggy.call_id: ("fetching", 1, "internal error (RuntimeError): see the worker's log"),
        last.call_id: ("assembled", 0, None),
    }


def call_id_of(runtime: Runtime, provider_call_id: str) -> str:
    with runtime.sessions() as session:
        query = select(Call.id).where(Call.provider_call_id == provider_call_id)
        return session.scalars(query).one()


def test_save_writes_the_calls_in_one_statement_and_detaches_them(
    client: TestClient, runtime: Runtime
) -> None:
    owner = factories.tenant(client, "acme")
    factories.add_call(runtime, owner, "call_1")
    factories.add_call(runtime, owner, "call_2")
    statements: list[str] = []
    event.listen(runtime.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with runtime.sessions.begin() as session:
        first, second = session.scalars(select(Call).order_by(Call.id)).all()
        first.status, first.record, first.fields = "failed", None, {"agent_name": "x"}
        second.assembly_attempts, second.assembly_next_at = 7, factories.T0
        statements.clear()
        calls.save(session, [first, second])
        written = [statement.split()[:2] for statement in statements]
        detached = [first not in session, second not in session]
    with runtime.sessions() as session:
        rows = session.execute(
            select(
                Call.id,
                Call.status,
                Call.record.is_(None),
                Call.fields,
                Call.assembly_attempts,
                Call.assembly_next_at,
            ).order_by(Call.id)
        )
        saved = [tuple(row) for row in rows]

    # The calls' stats as stored; the status moves the buckets by dimensions and the whole
    # org's, and the bins by dimensions (the whole org's and the agent's stay); the calls' rows.
    inserts = [["INSERT", "INTO"]] * 3
    assert (written, detached, saved) == (
        [["SELECT", "calls.id,"], *inserts, ["UPDATE", "calls"]],
        [True, True],
        [
            ("call_1", "failed", True, {"agent_name": "x"}, 1, None),
            ("call_2", "completed", False, {}, 7, factories.T0),
        ],
    )
