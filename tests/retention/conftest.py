"""Calls with everything of theirs, stored as the pipeline leaves them: events in the inbox, an
archived recording in the store, a delivery sent, an alert fired."""

import io
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from callwatch import ids
from callwatch.errors import NotFound
from callwatch.recordings.store import key_of, store_for
from callwatch.runtime import Runtime
from callwatch.tables import (
    Alert,
    AlertRule,
    Call,
    Delivery,
    InboxEvent,
    RecordingArchive,
    Subscription,
)
from tests.factories import Tenant, add_call


def inbox_row(
    owner: Tenant, received_at: datetime, call_id: str | None = None, **fields: Any
) -> InboxEvent:
    """An event as intake stores it, its id of `received_at`'s time (ids sort by time)."""
    millis = int(received_at.timestamp() * 1000)
    row_id = ids.new_id("evt", millis=millis)
    values: dict[str, Any] = {
        "id": row_id,
        "org_id": owner.org_id,
        "source_id": owner.source_id,
        "dedupe_key": row_id,
        "provider_call_id": f"p-{call_id}",
        "event": {"type": "call.completed", "customer_number": "+15550002222"},
        "raw_body": '{"customer_number": "+15550002222"}',
        "content_type": "application/json",
        "received_at": received_at,
        "due_at": received_at,
        "processed_at": received_at if call_id else None,
        "call_id": call_id,
        "attempts": 1,
    }
    return InboxEvent(**(values | fields))


def full_call(rt: Runtime, owner: Tenant, call_id: str, started_at: datetime, **fields: Any) -> str:
    """An assembled call with two events, an archived recording file, a delivery of its
    `call.assembled` and an alert on it: the callwatch id."""
    add_call(rt, owner, call_id, started_at=started_at, **fields)
    key = key_of(owner.org_id, call_id)
    store_for(rt.settings).put(key, io.BytesIO(b"RIFF" + call_id.encode()), "audio/wav")
    with rt.sessions.begin() as session:
        for offset in (0, 1):
            session.add(inbox_row(owner, started_at + timedelta(seconds=offset), call_id))
        session.add(
            RecordingArchive(
                call_id=call_id,
                org_id=owner.org_id,
                status="archived",
                url="https://rec.example/1.wav",
                key=key,
                bytes=8,
                sha256="0" * 64,
                content_type="audio/wav",
                archived_at=started_at,
                created_at=started_at,
                updated_at=started_at,
            )
        )
        subscription_id = _subscription(session, owner, started_at)
        session.add(
            Delivery(
                id=ids.new_id("msg"),
                org_id=owner.org_id,
                subscription_id=subscription_id,
                event_type="call.assembled",
                event_key=f"call.assembled:{call_id}",
                payload={"data": {"record": {"customer_number": "+15550002222"}}},
                state="delivered",
                attempts=1,
                created_at=started_at,
                updated_at=started_at,
            )
        )
        rule_id = _rule(session, owner, started_at)
        session.add(
            Alert(
                id=ids.new_id("alert"),
                org_id=owner.org_id,
                rule_id=rule_id,
                dedupe_key=call_id,
                call_id=call_id,
                state="open",
                triggered_at=started_at,
            )
        )
    return call_id


def _subscription(session: Any, owner: Tenant, now: datetime) -> str:
    found = session.scalar(select(Subscription.id).where(Subscription.org_id == owner.org_id))
    if found is not None:
        return str(found)
    subscription = Subscription(
        id=ids.new_id("sub"),
        org_id=owner.org_id,
        url="https://hooks.example/calls",
        event_types=["call.assembled"],
        filters={},
        enabled=True,
        secret="sealed",
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    session.flush()
    return subscription.id


def _rule(session: Any, owner: Tenant, now: datetime) -> str:
    found = session.scalar(select(AlertRule.id).where(AlertRule.org_id == owner.org_id))
    if found is not None:
        return str(found)
    rule = AlertRule(
        id=ids.new_id("rule"),
        org_id=owner.org_id,
        name="every call",
        kind="call",
        expression="duration_s > 0",
        enabled=True,
        created_at=now,
        updated_at=now,
    )
    session.add(rule)
    session.flush()
    return rule.id


def left_of(rt: Runtime, owner: Tenant, call_ids: list[str]) -> dict[str, int]:
    """How many rows of each kind these calls still have, and recording files."""
    with rt.sessions() as session:

        def count(model: Any, *where: Any) -> int:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        keys = [f"call.assembled:{call_id}" for call_id in call_ids]
        return {
            "calls": count(Call, Call.id.in_(call_ids)),
            "events": count(InboxEvent, InboxEvent.call_id.in_(call_ids)),
            "archives": count(RecordingArchive, RecordingArchive.call_id.in_(call_ids)),
            "deliveries": count(Delivery, Delivery.event_key.in_(keys)),
            "alerts": count(Alert, Alert.call_id.in_(call_ids)),
            "files": sum(stored(rt, owner, call_id) for call_id in call_ids),
        }


def stored(rt: Runtime, owner: Tenant, call_id: str) -> bool:
    try:
        b"".join(store_for(rt.settings).open(key_of(owner.org_id, call_id), 0, 0))
    except NotFound:
        return False
    return True
