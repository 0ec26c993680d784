"""Events that cannot be applied: kept aside with a reason, never marked done unapplied.

A worker quarantines an event that fails its transaction alone (`pipeline.ingest` narrows a
failed message down to it); the sweeper one whose deliveries ran out. A quarantined row is
neither pending (the sweeper does not send it again) nor applied: it is counted in `/metrics`,
listed by `GET /api/quarantine` and `callwatch quarantine list`, and `callwatch replay
--quarantined` sends it to the workers again, which clear its state once it applies.

Reasons name what went wrong, never the event's content (it is the sender's, untrusted).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from callwatch.errors import RequestError
from callwatch.intake import storable
from callwatch.intake.inbox import InboxRow
from callwatch.model.events import CallEvent
from callwatch.query.filters import Paging
from callwatch.tables import Call, InboxEvent, Source


def reason_of(row: InboxEvent | None, exc: Exception) -> str:
    """Why the (stored) event could not be applied, in a short line without its content."""
    if row is not None:
        try:
            event = CallEvent.model_validate(row.event)
        except ValidationError:
            return "its stored event is not a readable call event"
        try:
            storable.check(_as_row(row, event))
        except RequestError as refused:
            return refused.detail  # a limit the event breaks, as intake now refuses it
    if isinstance(exc, DBAPIError):
        code = getattr(exc.orig, "sqlstate", None)
        kind = type(exc.orig).__name__
        return f"the database refused it ({kind}{f', SQLSTATE {code}' if code else ''})"
    return f"applying it failed ({type(exc).__name__})"


def _as_row(row: InboxEvent, event: CallEvent) -> InboxRow:
    return InboxRow(
        id=row.id,
        org_id=row.org_id,
        source_id=row.source_id,
        dedupe_key=row.dedupe_key,
        provider_call_id=row.provider_call_id,
        event=event,
        raw_body=row.raw_body,
        content_type=row.content_type or "",
        received_at=row.received_at,
        due_at=row.due_at,
    )


def put(session: Session, inbox_ids: Sequence[str], reason: str, now: datetime) -> None:
    """Quarantine these rows, those not applied meanwhile."""
    session.execute(
        update(InboxEvent)
        .where(InboxEvent.id.in_(inbox_ids), InboxEvent.processed_at.is_(None))
        .values(quarantined_at=now, last_error=reason)
    )


def count(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(InboxEvent)
            .where(InboxEvent.quarantined_at.is_not(None))
        )
        or 0
    )


class QuarantineQuery(Paging):
    source: str | None = Field(None, description="source name")


class QuarantinedEvent(BaseModel):
    id: str = Field(description="the inbox event id")
    source: str
    provider: str
    provider_call_id: str = Field(description="empty if the event names no call")
    call_id: str | None = Field(description="callwatch's call of that id, if there is one")
    received_at: datetime
    quarantined_at: datetime
    reason: str


class QuarantinePage(BaseModel):
    items: list[QuarantinedEvent]
    total: int
    skip: int
    limit: int
    page: int | None = None


_COLUMNS = (
    InboxEvent.id,
    Source.name,
    Source.provider,
    InboxEvent.provider_call_id,
    Call.id,
    InboxEvent.received_at,
    InboxEvent.quarantined_at,
    InboxEvent.last_error,
)


def page(session: Session, org_id: str, query: QuarantineQuery) -> QuarantinePage:
    """The org's quarantined events, the latest quarantined first."""
    where: list[ColumnElement[bool]] = [
        InboxEvent.org_id == org_id,
        InboxEvent.quarantined_at.is_not(None),
    ]
    if query.source is not None:
        where.append(Source.name == query.source)
    joined = (
        select(*_COLUMNS)
        .join(Source, Source.id == InboxEvent.source_id)
        .outerjoin(
            Call,
            and_(
                Call.source_id == InboxEvent.source_id,
                Call.provider_call_id == InboxEvent.provider_call_id,
            ),
        )
        .where(*where)
    )
    total = session.scalar(
        select(func.count())
        .select_from(InboxEvent)
        .join(Source, Source.id == InboxEvent.source_id)
        .where(*where)
    )
    rows = session.execute(
        joined.order_by(InboxEvent.quarantined_at.desc(), InboxEvent.id.desc())
        .offset(query.offset)
        .limit(query.limit)
    )
    items = [
        QuarantinedEvent(
            id=event_id,
            source=source,
            provider=provider,
            provider_call_id=provider_call_id,
            call_id=call_id,
            received_at=received_at,
            quarantined_at=quarantined_at,
            reason=reason or "",
        )
        for (
            event_id,
            source,
            provider,
            provider_call_id,
            call_id,
            received_at,
            quarantined_at,
            reason,
        ) in rows
    ]
    return QuarantinePage(
        items=items, total=total or 0, skip=query.offset, limit=query.limit, page=query.page
    )


@dataclass(frozen=True)
class Chosen:
    """A quarantined event chosen for a replay."""

    event_id: str
    org_id: str
    provider_call_id: str
    received_at: datetime
    reason: str


def chosen(session: Session, conditions: Sequence[ColumnElement[bool]]) -> list[Chosen]:
    """The quarantined events that match, oldest first."""
    rows = session.execute(
        select(
            InboxEvent.id,
            InboxEvent.org_id,
            InboxEvent.provider_call_id,
            InboxEvent.received_at,
            InboxEvent.last_error,
        )
        .where(InboxEvent.quarantined_at.is_not(None), *conditions)
        .order_by(InboxEvent.received_at, InboxEvent.id)
    )
    return [Chosen(*row[:4], reason=row[4] or "") for row in rows]


def line(event: Chosen) -> str:
    """One chosen event: id, provider call id, org, received (UTC), reason."""
    received = event.received_at.strftime("%Y-%m-%d %H:%M:%S")
    parts = [event.event_id, event.provider_call_id or "-", event.org_id, received, event.reason]
    return "  ".join(parts).rstrip()
