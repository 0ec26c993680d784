"""Calls in the database: apply inbox events to them and read them back as records."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_core import to_json
from sqlalchemy import ColumnElement, Text, bindparam, cast, select, text, tuple_, update
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.orm import Session

from callwatch import ids
from callwatch.calls import assembly, correlation, rollups
from callwatch.calls.fold import CallState, fold
from callwatch.db import insert_ignore, json_recordset, memo
from callwatch.errors import NotFound
from callwatch.model.events import CallEvent
from callwatch.model.record_columns import RECORD_COLUMNS
from callwatch.model.records import Assembly, CallDetails, CallRecord, Metrics, Recording
from callwatch.tables import Call, InboxEvent, Source


@dataclass(frozen=True)
class Applied:
    call: Call  # locked for the rest of the transaction
    state: CallState  # folded from all of the call's stored events
    ready_to_assemble: bool
    assembled: bool
    previous_status: str | None
    status_changed: bool


def _lock_calls(
    session: Session,
    rows: Sequence[InboxEvent],
    events: dict[str, CallEvent],
    providers: dict[str, str],
    also: set[str],
    now: datetime,
) -> list[Call]:
    """The calls of these rows, created if new, plus the calls `also` names; all locked."""
    values: dict[tuple[str, str], dict[str, Any]] = {}
    # Inserted in key order: two batches creating the same new calls then wait, never deadlock.
    for row in sorted(rows, key=lambda row: (row.source_id, row.provider_call_id)):
        key = (row.source_id, row.provider_call_id)
        if key not in values:
            values[key] = {
                "id": ids.new_id("call"),
                "org_id": row.org_id,
                "source_id": row.source_id,
                "provider": providers.get(row.source_id, "generic"),
                "provider_call_id": row.provider_call_id,
                "started_at": events[row.id].at,
                "fields": {},
                "assembly_state": "pending",
                "assembly_attempts": 0,
                "assembly_failures": 0,
                "has_recording": False,
                "created_at": now,
                "updated_at": now,
            }
    if values:
        statement = insert_ignore(session, Call.__table__).returning(Call.__table__.c.id)  # type: ignore[arg-type]
        # `save` adds the new calls to the stats rollups (they are in none yet).
        rollups.created(session, session.scalars(statement, list(values.values())))
    # Row locks serialise concurrent work on a call (Postgres; SQLite locks the whole file),
    # taken in id order, in one statement, for the same reason.
    wanted: ColumnElement[bool] = tuple_(Call.source_id, Call.provider_call_id).in_(list(values))
    if also:
        wanted = wanted | Call.id.in_(also)
    return list(session.scalars(select(Call).where(wanted).order_by(Call.id).with_for_update()))


def events_of(session: Session, call_id: str) -> list[tuple[str, CallEvent]]:
    return events_of_calls(session, [call_id]).get(call_id, [])


def events_of_calls(
    session: Session, call_ids: Sequence[str]
) -> dict[str, list[tuple[str, CallEvent]]]:
    # As JSON text: pydantic parses it directly, instead of validating the driver's dicts.
    rows = session.execute(
        select(InboxEvent.call_id, InboxEvent.id, cast(InboxEvent.event, Text)).where(
            InboxEvent.call_id.in_(call_ids)
        )
    )
    events: dict[str, list[tuple[str, CallEvent]]] = {}
    for call_id, event_id, event in rows:
        assert call_id is not None  # selected by it
        events.setdefault(call_id, []).append((event_id, CallEvent.model_validate_json(event)))
    return events


def state_of(session: Session, call_id: str) -> CallState:
    return fold(events_of(session, call_id))


def apply_inbox(
    session: Session, inbox_ids: Sequence[str], now: datetime, match_wait_s: float
) -> list[Applied]:
    """Apply stored events to their calls; events unknown, applied or being applied are skipped.

    An event that names no call waits up to `match_wait_s` for a call it matches, then becomes
    a call of its own; one that joins another source's call is kept until that call arrives.
    """
    rows = session.scalars(
        select(InboxEvent)
        .where(InboxEvent.id.in_(inbox_ids), InboxEvent.processed_at.is_(None))
        .order_by(InboxEvent.id)
        .with_for_update(skip_locked=True)
    ).all()
    events = {row.id: CallEvent.model_validate(row.event) for row in rows}
    own = [
        row
        for row in rows
        if not events[row.id].joins and correlation.named(session, row, events, now, match_wait_s)
    ]
    joining = [row for row in rows if events[row.id].joins]
    if not own and not joining:
        return []
    targets = correlation.join_targets(session, joining, events)
    correlation.park(session, [row for row in joining if row.id not in targets], events)
    source_ids = {row.source_id for row in own}
    providers = dict(
        session.execute(select(Source.id, Source.provider).where(Source.id.in_(source_ids))).all()
    )
    locked = _lock_calls(session, own, events, providers, set(targets.values()), now)
    by_key = {(call.source_id, call.provider_call_id): call.id for call in locked}
    call_ids: dict[str, str | None] = {
        row.id: by_key[(row.source_id, row.provider_call_id)] for row in own
    }
    call_ids |= {row.id: targets.get(row.id) for row in joining}
    _mark_applied(session, call_ids, now)
    correlation.claim_parked(session, locked)
    session.flush()
    folded = events_of_calls(session, [call.id for call in locked])
    return [_apply_state(call, fold(folded[call.id]), now) for call in locked]


def _mark_applied(session: Session, call_ids: dict[str, str | None], now: datetime) -> None:
    """Inbox id → its call: one statement for all rows (the unit of work's UPDATE of each row's
    object cost several times the CPU). The rows' objects in the session keep their old values.
    A quarantined row sent again (`callwatch replay --quarantined`) leaves the quarantine."""
    table = InboxEvent.__table__
    statement = (
        update(table)  # type: ignore[arg-type]
        .where(table.c.id == bindparam("row_id"))
        .values(
            call_id=bindparam("row_call_id"), processed_at=now, quarantined_at=None, last_error=None
        )
    )
    values = [{"row_id": key, "row_call_id": value} for key, value in sorted(call_ids.items())]
    session.execute(statement, values)


# What a call's row never changes once inserted; `save` writes every other column.
_FIXED = frozenset({"id", "org_id", "source_id", "provider", "provider_call_id", "created_at"})
_SAVED = [column for column in Call.__table__.columns if column.key not in _FIXED]
# On Postgres the rows go in as one JSON document (`db.json_recordset`), as inbox rows do.
_PG = PGDialect()  # type: ignore[no-untyped-call]
_PG_COLUMNS = {"call_id": "text"} | {c.key: c.type.compile(dialect=_PG) for c in _SAVED}
_PG_SAVE = text(
    f"UPDATE calls SET {', '.join(f'{c.key} = r.{c.key}' for c in _SAVED)} "
    f"FROM {json_recordset(':rows', _PG_COLUMNS)} WHERE calls.id = r.call_id"
)
_SAVE = (
    update(Call.__table__)  # type: ignore[arg-type]
    .where(Call.__table__.c.id == bindparam("call_id"))
    .values({column.key: bindparam(column.key) for column in _SAVED})
)


def save(session: Session, calls: Sequence[Call]) -> None:
    """Write the (locked) calls' rows in one statement and detach them from the session.

    The last step of a transaction that changed them: changes made afterwards are not saved.
    Every change to a call's stats columns is saved here (never flushed by the session), so the
    stats rollups move from the rows as they are stored to the rows as they will be.
    """
    rows = [{"call_id": call.id} | {c.key: getattr(call, c.key) for c in _SAVED} for call in calls]
    if not rows:
        return
    with session.no_autoflush:
        # The one writer of the columns stats read: the rollups move with the rows
        # (calls/rollups.py), from the rows as stored (locked) to the rows as they will be.
        before = rollups.shares_of(session, [call.id for call in calls])
        rollups.move(session, [(before.get(call.id), rollups.share_of(call)) for call in calls])
        if session.get_bind().dialect.name == "postgresql":
            session.execute(_PG_SAVE, {"rows": to_json(rows).decode()})
        else:
            session.execute(_SAVE, rows)
    for call in calls:
        session.expunge(call)


def refold(call: Call, events: Sequence[tuple[str, CallEvent]], now: datetime) -> Applied:
    """Apply all of a (locked) call's stored events to its row again, as `apply_inbox` does."""
    return _apply_state(call, fold(events), now)


def _apply_state(call: Call, state: CallState, now: datetime) -> Applied:
    fields = state.fields
    previous = call.status
    call.status = state.status
    call.started_at = state.started_at
    call.answered_at = state.answered_at
    call.ended_at = state.ended_at
    call.fields = fields.model_dump(mode="json", exclude_none=True)
    if call.assembly_state != "assembled":
        call.agent_id, call.campaign_id = fields.agent_id, fields.campaign_id
        call.direction, call.channel = fields.direction, fields.channel
        call.from_number, call.to_number = fields.from_number, fields.to_number
        call.customer_number = fields.customer_number or assembly.customer_of(
            fields.direction, fields.from_number, fields.to_number
        )
    call.updated_at = now
    ready = state.terminal and call.assembly_state == "pending" and call.assembly_next_at is None
    if ready:
        call.assembly_next_at = now
    return Applied(
        call=call,
        state=state,
        ready_to_assemble=ready,
        assembled=call.assembly_state == "assembled",
        previous_status=previous,
        status_changed=call.status != previous,
    )


def keep_details(call: Call, details: CallDetails, *, redact: bool) -> None:
    """Store the platform's details on the (locked) call's row; with `redact` (the org's
    `redact_pii`), their free text's personal data replaced first (docs/data.md#redaction)."""
    if redact:
        from callwatch.model import redaction  # only where it redacts: see `_region`

        details = redaction.redact_facts(details, _region(call))
    call.details = details.model_dump(mode="json", exclude_none=True)


def keep_record(session: Session, call: Call, record: CallRecord, *, redact: bool) -> CallRecord:
    """Store the record on the (locked) call's row and copy its query columns; the record kept.

    With `redact` (the org's `redact_pii`), the record's free text and the raw bodies of the
    call's applied events have their personal data replaced first; the call's own numbers stay.
    """
    if redact:
        from callwatch.model import redaction  # only where it redacts: see `_region`

        region = _region(call)
        record = redaction.redact_facts(record, region)
        _redact_bodies(session, call.id, region)
    call.record = record.model_dump(mode="json")
    copy_columns(call, record)
    return record


def _region(call: Call) -> str:
    """How the call's people write numbers: as in its own numbers' country.

    Redaction's modules are imported when a call is first redacted: the web process imports
    this module but never redacts, and libphonenumber's and stdnum's tables cost ~0.3 s of a
    start (more on a busy host)."""
    from callwatch.model import pii

    return pii.region_of(call.customer_number, call.from_number, call.to_number)


def _redact_bodies(session: Session, call_id: str, region: str) -> None:
    """The raw bodies of the call's applied events, redacted where they hold personal data."""
    from callwatch.model import redaction

    rows = session.execute(
        select(InboxEvent.id, InboxEvent.raw_body, InboxEvent.content_type).where(
            InboxEvent.call_id == call_id, InboxEvent.processed_at.is_not(None)
        )
    )
    changed = []
    for row_id, body, content_type in rows:
        redacted = redaction.redact_body(body, content_type, region)
        if redacted != body:
            changed.append({"row_id": row_id, "body": redacted})
    if changed:
        table = InboxEvent.__table__
        session.execute(
            update(table)  # type: ignore[arg-type]
            .where(table.c.id == bindparam("row_id"))
            .values(raw_body=bindparam("body")),
            changed,
        )


def copy_columns(call: Call, record: CallRecord) -> None:
    """Copy what queries filter and aggregate on from the record onto the call's row."""
    for column in RECORD_COLUMNS:
        setattr(call, column.name, column.read(record))


# What `copy_columns` takes from the record that the events do not say (`_apply_state` sets them).
_FROM_RECORD_ONLY = [column for column in RECORD_COLUMNS if not column.from_events]


def forget_record(call: Call) -> None:
    """Drop the assembled record, the details it came from and the columns copied from it.

    A stored record is served as it is, so one is kept only while the call is assembled."""
    call.record = None
    call.details = None
    for column in _FROM_RECORD_ONLY:
        setattr(call, column.name, column.without_record)


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
    return build_record(
        call, source_name(session, call), state, details, recording, None, call.updated_at
    )


def source_name(session: Session, call: Call) -> str:
    def read() -> str:
        return session.scalar(select(Source.name).where(Source.id == call.source_id)) or ""

    return memo(session, ("source name", call.source_id), read)


def build_record(
    call: Call,
    source: str,
    state: CallState,
    details: CallDetails,
    recording: Recording,
    metrics: Metrics | None,
    updated_at: datetime,
) -> CallRecord:
    """The record of `call` from its state and merged details; its identity comes from the row."""
    return assembly.build(
        call_id=call.id,
        org_id=call.org_id,
        source=source,
        provider=call.provider,
        provider_call_id=call.provider_call_id,
        state=state,
        details=details,
        recording=recording,
        metrics=metrics,
        assembly=assembly_view(call),
        updated_at=updated_at,
    )
