"""What follows a change to a call: subscriber deliveries, alerts and ops stream entries."""

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from callwatch.alerts import firing
from callwatch.downstream import deliveries
from callwatch.downstream.effects import Effects, StreamEntry
from callwatch.downstream.streams import CALLS_STREAM, call_summary
from callwatch.model.records import CallRecord
from callwatch.tables import Call


def _facts(call: Call) -> dict[str, Any]:
    """What subscription filters can match on, in every call event's data."""
    return {
        "call_id": call.id,
        "provider_call_id": call.provider_call_id,
        "source_id": call.source_id,
        "agent_id": call.agent_id,
        "status": call.status,
    }


def status_changed(session: Session, call: Call, previous: str | None, now: datetime) -> Effects:
    data = _facts(call) | {"previous_status": previous}
    key = f"call.status_changed:{call.id}:{call.status}"
    return Effects(deliveries.fan_out(session, call.org_id, "call.status_changed", data, key, now))


def assembled(session: Session, call: Call, record: CallRecord, now: datetime) -> Effects:
    key = f"call.assembled:{call.id}"
    effects = Effects(
        deliveries.fan_out(
            session,
            call.org_id,
            "call.assembled",
            _facts(call),
            key,
            now,
            more=lambda: {"record": record.model_dump(mode="json")},
        ),
        [StreamEntry(CALLS_STREAM, "call.assembled", call.org_id, call.id, call_summary(record))],
    )
    effects.add(firing.on_call(session, call, record, now))
    return effects


def assembly_failed(session: Session, call: Call, error: str, now: datetime) -> Effects:
    data = _facts(call) | {"error": error}
    key = f"call.assembly_failed:{call.id}"
    return Effects(deliveries.fan_out(session, call.org_id, "call.assembly_failed", data, key, now))
