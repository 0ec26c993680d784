"""Finding the call of an event that does not name it, on a real database."""

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from callwatch.calls import correlation, store
from callwatch.model.events import CallEvent, NumberMatch
from callwatch.pipeline import sweeper
from callwatch.runtime import Runtime
from callwatch.tables import InboxEvent, PendingJoin
from tests.factories import T0, add_call, tenant

OURS, CUSTOMER = "+15550001111", "+15550002222"


def report(source_id: str, at_minutes: float) -> tuple[InboxEvent, CallEvent]:
    event = CallEvent(
        provider_call_id="",
        type="end-of-call-report",
        status=None,
        at=T0 + timedelta(minutes=at_minutes),
        match=NumberMatch(our_number=OURS, customer_number=CUSTOMER),
        dedupe_key="h:1",
    )
    return InboxEvent(id="evt_1", source_id=source_id, org_id="org"), event


def test_a_report_matches_the_latest_unfinished_call_between_its_numbers_before_it(
    client: TestClient, runtime: Runtime
) -> None:
    owner = tenant(client, "acme")
    other_source = tenant(client, "other")
    at = {"started_at": T0}

    def call(call_id: str, minutes: float, **fields: object) -> None:
        add_call(runtime, owner, call_id, started_at=T0 + timedelta(minutes=minutes), **fields)

    call("older", 0, status="in_progress")
    call("latest", 10, status="in_progress")
    call("finished", 20, status="completed")
    call("another-customer", 25, status="in_progress", customer_number="+15550009999")
    call("after-the-report", 40, status="in_progress")
    add_call(runtime, other_source, "other-source", status="in_progress", **at)

    with runtime.sessions() as session:
        found = correlation.matched_call(session, *report(owner.source_id, 30))
        nothing = correlation.matched_call(session, *report(owner.source_id, -5))

    assert (found, nothing) == ("p-latest", None)


def test_joins_find_calls_by_either_id_and_only_in_their_org(
    client: TestClient, runtime: Runtime
) -> None:
    acme, globex = tenant(client, "acme"), tenant(client, "globex")
    add_call(runtime, acme, "call_acme")  # provider call id p-call_acme
    add_call(runtime, globex, "call_globex", provider_call_id="p-call_acme")
    rows = [
        InboxEvent(id="evt_a", org_id=acme.org_id),
        InboxEvent(id="evt_g", org_id=globex.org_id),
        InboxEvent(id="evt_by_our_id", org_id=acme.org_id),
        InboxEvent(id="evt_unknown", org_id=acme.org_id),
    ]
    joins = {"evt_a": ["p-call_acme"], "evt_g": ["p-call_acme"]}
    joins |= {"evt_by_our_id": ["nope", "call_acme"], "evt_unknown": ["nope"]}
    events = {
        key: CallEvent(
            provider_call_id=ids[0],
            type="fixa.analysis",
            status=None,
            at=T0,
            joins=ids,
            dedupe_key=key,
        )
        for key, ids in joins.items()
    }

    with runtime.sessions() as session:
        targets = correlation.join_targets(session, rows, events)

    assert targets == {"evt_a": "call_acme", "evt_g": "call_globex", "evt_by_our_id": "call_acme"}


def test_the_sweeper_unparks_an_event_whose_call_arrived_in_a_concurrent_transaction(
    client: TestClient, runtime: Runtime
) -> None:
    owner = tenant(client, "acme")
    add_call(runtime, owner, "call_1")  # provider call id p-call_1
    joining = CallEvent(
        provider_call_id="p-call_1",
        type="fixa.analysis",
        status=None,
        at=T0,
        enrich={"errors": [{"type": "tool_call_failed"}]},
        joins=["p-call_1"],
        dedupe_key="fixa-1",
    )
    with runtime.sessions.begin() as session:
        # What a transaction that could not yet see the call left behind.
        session.add(inbox_row(owner.org_id, owner.source_id, joining, processed_at=T0))
        session.flush()
        correlation.park(session, [session.get_one(InboxEvent, "evt_fixa")], {"evt_fixa": joining})

    with runtime.sessions.begin() as session:
        overdue = sweeper.sweep(session, T0, grace_s=0)
    with runtime.sessions.begin() as session:
        store.apply_inbox(session, overdue.inbox_ids, T0, match_wait_s=0)
    with runtime.sessions() as session:
        row = session.get_one(InboxEvent, "evt_fixa")
        left = session.scalars(select(PendingJoin.inbox_id)).all()

    assert (overdue.inbox_ids, row.call_id, left) == (["evt_fixa"], "call_1", [])


def inbox_row(org_id: str, source_id: str, event: CallEvent, **values: Any) -> InboxEvent:
    return InboxEvent(
        id="evt_fixa",
        org_id=org_id,
        source_id=source_id,
        dedupe_key=event.dedupe_key,
        provider_call_id=event.provider_call_id,
        event=event.model_dump(mode="json"),
        raw_body="{}",
        content_type="application/json",
        received_at=T0,
        due_at=T0,
        attempts=0,
        **values,
    )
