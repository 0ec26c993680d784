"""Calls in the database: apply inbox events to them and read them back as records."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from callwatch import assembly, ids
from callwatch.db import insert_ignore
from callwatch.errors import NotFound
from callwatch.events import CallEvent
from callwatch.records import Assembly, CallDetails, CallRecord, Metrics, Recording
from callwatch.state import CallState, fold
from callwatch.tables import Call, InboxEvent, Source


@dataclass(frozen=True)
class Applied:
    call_id: str
    ready_to_assemble: bool
    assembled: bool


def _ensure_call(
    session: Session, row: InboxEvent, provider: str, event: CallEvent, now: datetime
) -> Call:
    values = {
        "id": ids.new_id("call"),
        "org_id": row.org_id,
        "source_id": row.source_id,
        "provider": provider,
        "provider_call_id": row.provider_call_id,
        "started_at": event.at,
        "fields": {},
        "assembly_state": "pending",
        "assembly_attempts": 0,
        "assembly_failures": 0,
        "has_recording": False,
        "created_at": now,
        "updated_at": now,
    }
    session.execute(insert_ignore(session, Call.__table__), [values])  # type: ignore[arg-type]
    # The row lock serialises concurrent events of one call (Postgres; SQLite locks the file).
    call = session.scalars(
        select(Call)
        .where(Call.source_id == row.source_id, Call.provider_call_id == row.provider_call_id)
        .with_for_update()
    ).one()
    return call


def events_of(session: Session, call_id: str) -> list[tuple[str, CallEvent]]:
    rows = session.execute(
        select(InboxEvent.id, InboxEvent.event).where(InboxEvent.call_id == call_id)
    )
    return [(event_id, CallEvent.model_validate(event)) for event_id, event in rows]


def state_of(session: Session, call_id: str) -> CallState:
    return fold(events_of(session, call_id))


def apply_inbox(session: Session, inbox_id: str, now: datetime) -> Applied | None:
    """Apply one stored event to its call; None if it is unknown or already applied."""
    row = session.scalars(
        select(InboxEvent).where(InboxEvent.id == inbox_id).with_for_update()
    ).one_or_none()
    if row is None or row.processed_at is not None:
        return None
    provider = session.scalar(select(Source.provider).where(Source.id == row.source_id))
    event = CallEvent.model_validate(row.event)
    call = _ensure_call(session, row, provider or "generic", event, now)
    row.call_id = call.id
    row.processed_at = now
    session.flush()
    state = state_of(session, call.id)
    fields = state.fields
    call.status = state.status
    call.started_at = state.started_at
    call.ended_at = state.ended_at
    call.fields = state.fields.model_dump(mode="json", exclude_none=True)
    if call.record is None:
        call.agent_id, call.campaign_id = fields.agent_id, fields.campaign_id
        call.direction, call.channel = fields.direction, fields.channel
        call.from_number, call.to_number = fields.from_number, fields.to_number
    call.updated_at = now
    ready = state.terminal and call.assembly_state == "pending" and call.assembly_next_at is None
    if ready:
        call.assembly_next_at = now
    return Applied(
        call_id=call.id, ready_to_assemble=ready, assembled=call.assembly_state == "assembled"
    )


def find(session: Session, org_id: str, call_id: str) -> Call:
    """A call of this org by callwatch id or provider call id; other orgs' calls are NotFound."""
    call = session.scalars(
        select(Call)
        .where(Call.org_id == org_id, (Call.id == call_id) | (Call.provider_call_id == call_id))
        .order_by(Call.started_at.desc())
        .limit(1)
    ).one_or_none()
    if call is None:
        raise NotFound(f"no call {call_id!r}")
    return call


def assembly_view(call: Call) -> Assembly:
    return Assembly(
        state=call.assembly_state,
        attempts=call.assembly_attempts,
        assembled_at=call.assembled_at,
        last_error=call.assembly_last_error,
    )


def record_of(session: Session, call: Call) -> CallRecord:
    """The assembled record, or a partial one from the events while assembly is under way."""
    state = state_of(session, call.id)
    if call.record is not None:
        stored = CallRecord.model_validate(call.record)
        return stored.model_copy(
            update={
                "timeline": state.timeline,
                "assembly": assembly_view(call),
                "updated_at": call.updated_at,
            }
        )
    details = assembly.merge(state, None)
    recording = assembly.recording_of(details, call.updated_at)
    return build_record(session, call, state, details, recording, None, call.updated_at)


def build_record(
    session: Session,
    call: Call,
    state: CallState,
    details: CallDetails,
    recording: Recording,
    metrics: Metrics | None,
    updated_at: datetime,
) -> CallRecord:
    """The record of `call` from its state and merged details; its identity comes from the row."""
    source = session.get(Source, call.source_id)
    return assembly.build(
        call_id=call.id,
        org_id=call.org_id,
        source=source.name if source else "",
        provider=call.provider,
        provider_call_id=call.provider_call_id,
        state=state,
        details=details,
        recording=recording,
        metrics=metrics,
        assembly=assembly_view(call),
        updated_at=updated_at,
    )
