"""What follows a change to a call: subscriber deliveries, alerts and ops stream entries."""

from datetime import datetime

from sqlalchemy.orm import Session

from callwatch.alerts import firing
from callwatch.downstream import call_events, deliveries
from callwatch.downstream.effects import Effects, StreamEntry
from callwatch.downstream.streams import CALLS_STREAM, call_summary
from callwatch.model.records import CallRecord
from callwatch.tables import Call


def status_changed(session: Session, call: Call, previous: str | None, now: datetime) -> Effects:
    data = call_events.facts(call) | {"previous_status": previous}
    key = call_events.key(call_events.STATUS_CHANGED, call.id, call.status)
    return Effects(
        deliveries.fan_out(session, call.org_id, call_events.STATUS_CHANGED, data, key, now)
    )


def assembled(session: Session, call: Call, record: CallRecord, now: datetime) -> Effects:
    key = call_events.key(call_events.ASSEMBLED, call.id)
    effects = Effects(
        deliveries.fan_out(
            session,
            call.org_id,
            call_events.ASSEMBLED,
            call_events.facts(call),
            key,
            now,
            more=lambda: {"record": record.model_dump(mode="json")},
        ),
        [StreamEntry(CALLS_STREAM, "call.assembled", call.org_id, call.id, call_summary(record))],
    )
    effects.add(firing.on_call(session, call, record, now))
    return effects


def assembly_failed(session: Session, call: Call, error: str, now: datetime) -> Effects:
    data = call_events.facts(call) | {"error": error}
    key = call_events.key(call_events.ASSEMBLY_FAILED, call.id)
    return Effects(
        deliveries.fan_out(session, call.org_id, call_events.ASSEMBLY_FAILED, data, key, now)
    )
