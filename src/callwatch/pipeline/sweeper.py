"""Finds work whose queue message was lost (flushed Redis, killed worker) so it can be re-sent."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from callwatch.calls import correlation
from callwatch.pipeline import quarantine
from callwatch.recordings import archive
from callwatch.tables import Call, InboxEvent

MAX_INBOX_DELIVERIES = 10
BATCH = 1000


@dataclass(frozen=True)
class Overdue:
    inbox_ids: list[str]
    call_ids: list[str]
    archive_ids: list[str]  # calls whose recording archive is overdue


def sweep(session: Session, now: datetime, grace_s: float) -> Overdue:
    cutoff = now - timedelta(seconds=grace_s)
    orphans = correlation.unpark_orphans(session, now, BATCH)
    stale = session.execute(
        select(InboxEvent.id, InboxEvent.attempts)
        .where(
            InboxEvent.processed_at.is_(None),
            InboxEvent.quarantined_at.is_(None),
            InboxEvent.due_at < cutoff,
        )
        .order_by(InboxEvent.due_at)
        .limit(BATCH)
    ).all()
    dead = [event_id for event_id, attempts in stale if attempts >= MAX_INBOX_DELIVERIES]
    retry = [event_id for event_id, attempts in stale if attempts < MAX_INBOX_DELIVERIES]
    if dead:
        # Never marked done unapplied: kept, counted and listed, for `callwatch replay`.
        reason = f"not applied after {MAX_INBOX_DELIVERIES} deliveries"
        quarantine.put(session, dead, reason, now)
    for event_id, attempts in stale:
        if attempts < MAX_INBOX_DELIVERIES:
            # Spaced out exponentially so a long worker outage does not exhaust the deliveries.
            session.execute(
                update(InboxEvent)
                .where(InboxEvent.id == event_id)
                .values(
                    attempts=attempts + 1,
                    due_at=now + timedelta(seconds=grace_s * 2**attempts),
                )
            )
    due = list(
        session.scalars(
            select(Call.id)
            .where(
                Call.assembly_state.in_(("pending", "fetching", "awaiting_recording")),
                Call.assembly_next_at < cutoff,
            )
            .order_by(Call.assembly_next_at)
            .limit(BATCH)
        )
    )
    if due:
        # Pushed forward so the next sweep does not send them again while they are queued.
        session.execute(update(Call).where(Call.id.in_(due)).values(assembly_next_at=now))
    archives = archive.overdue(session, now, cutoff)
    return Overdue(inbox_ids=retry + orphans, call_ids=due, archive_ids=archives)
