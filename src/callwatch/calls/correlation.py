"""Finding the call of events that do not name it: joins across sources, number matches."""

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from callwatch.db import insert_ignore
from callwatch.intake import storable
from callwatch.model.events import TERMINAL_STATUSES, UNMATCHED_PREFIX, CallEvent
from callwatch.tables import Call, InboxEvent, PendingJoin

# A platform's clock and ours may disagree by this much when an event's time is compared.
CLOCK_SKEW = timedelta(minutes=2)
# No call lasts longer: older calls are not looked at for a match.
LONGEST_CALL = timedelta(hours=12)


def join_targets(
    session: Session, rows: Sequence[InboxEvent], events: dict[str, CallEvent]
) -> dict[str, str]:
    """Inbox id → id of the org's call each joining row names, for those already known."""
    wanted = {key for row in rows for key in events[row.id].joins}
    orgs = {row.org_id for row in rows}
    if not wanted:
        return {}
    found = session.execute(
        select(Call.id, Call.org_id, Call.provider_call_id)
        .where(
            Call.org_id.in_(orgs),
            or_(Call.provider_call_id.in_(wanted), Call.id.in_(wanted)),
        )
        .order_by(Call.started_at.desc())
    ).all()
    targets: dict[str, str] = {}
    for row in rows:
        for call_id, org_id, provider_call_id in found:
            names = set(events[row.id].joins)
            if org_id == row.org_id and (call_id in names or provider_call_id in names):
                targets[row.id] = call_id
                break
    return targets


def park(session: Session, rows: Sequence[InboxEvent], events: dict[str, CallEvent]) -> None:
    """Keep joining rows whose call is unknown until a call with one of their ids arrives."""
    values = [
        {"inbox_id": row.id, "join_key": key, "org_id": row.org_id}
        for row in rows
        for key in dict.fromkeys(events[row.id].joins)
    ]
    if values:
        session.execute(insert_ignore(session, PendingJoin.__table__), values)  # type: ignore[arg-type]


def claim_parked(session: Session, calls: Iterable[Call]) -> None:
    """Attach the parked events that wait for any of these calls to them."""
    by_key = {
        (call.org_id, key): call.id for call in calls for key in (call.provider_call_id, call.id)
    }
    if not by_key:
        return
    waiting = session.execute(
        select(PendingJoin.inbox_id, PendingJoin.org_id, PendingJoin.join_key).where(
            PendingJoin.org_id.in_({org for org, _ in by_key}),
            PendingJoin.join_key.in_({key for _, key in by_key}),
        )
    ).all()
    claimed = {
        inbox_id: by_key[(org_id, key)]
        for inbox_id, org_id, key in waiting
        if (org_id, key) in by_key
    }
    if not claimed:
        return
    for inbox_id, call_id in claimed.items():
        session.execute(update(InboxEvent).where(InboxEvent.id == inbox_id).values(call_id=call_id))
    session.execute(delete(PendingJoin).where(PendingJoin.inbox_id.in_(list(claimed))))


def unpark_orphans(session: Session, now: datetime, limit: int) -> list[str]:
    """Parked events whose call exists after all, made due again; their ids.

    A joining event and its call applied in two concurrent transactions miss each other (each
    is invisible to the other until commit): the sweeper finds such pairs once both are in."""
    found = list(
        session.scalars(
            select(PendingJoin.inbox_id)
            .join(
                Call,
                and_(
                    Call.org_id == PendingJoin.org_id,
                    or_(
                        Call.provider_call_id == PendingJoin.join_key,
                        Call.id == PendingJoin.join_key,
                    ),
                ),
            )
            .distinct()
            .limit(limit)
        )
    )
    if found:
        session.execute(delete(PendingJoin).where(PendingJoin.inbox_id.in_(found)))
        session.execute(
            update(InboxEvent)
            .where(InboxEvent.id.in_(found))
            .values(processed_at=None, call_id=None, due_at=now)
        )
    return found


def matched_call(session: Session, row: InboxEvent, event: CallEvent) -> str | None:
    """The provider call id of the latest unfinished call of the row's source between the
    event's numbers that started before it, if any."""
    match = event.match
    if match is None:
        return None
    found = session.scalars(
        select(Call.provider_call_id)
        .where(
            Call.source_id == row.source_id,
            Call.customer_number == match.customer_number,
            or_(Call.from_number == match.our_number, Call.to_number == match.our_number),
            Call.started_at <= event.at + CLOCK_SKEW,
            Call.started_at >= event.at - LONGEST_CALL,
            or_(Call.status.is_(None), Call.status.not_in(TERMINAL_STATUSES)),
        )
        .order_by(Call.started_at.desc())
        .limit(1)
    ).first()
    return found


def named(
    session: Session,
    row: InboxEvent,
    events: dict[str, CallEvent],
    now: datetime,
    match_wait_s: float,
) -> bool:
    """Give the row the provider call id of its call; False while it waits for one to match."""
    if row.provider_call_id:
        return True
    found = matched_call(session, row, events[row.id])
    if found is None:
        if row.received_at + timedelta(seconds=match_wait_s) > now:
            row.due_at = now  # the sweeper brings it back to look again
            return False
        room = storable.PROVIDER_CALL_ID - len(UNMATCHED_PREFIX)
        found = UNMATCHED_PREFIX + storable.fit(row.dedupe_key, room)
    row.provider_call_id = found
    events[row.id] = events[row.id].model_copy(update={"provider_call_id": found})
    row.event = events[row.id].model_dump(mode="json")
    return True
