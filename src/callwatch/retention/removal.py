"""Deleting calls with everything of theirs: the record, its events (raw bodies and parsed), its
deliveries and alerts, its archived recording's row, and its share of the stats rollups. The
recording files go from the store before the transaction commits (`forget_files`): a commit that
fails leaves rows whose files are gone, which the next attempt deletes; never the other way
round, a file that outlives its call's erasure."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from callwatch.calls import rollups
from callwatch.downstream import call_events
from callwatch.recordings.store import RecordingStore
from callwatch.tables import Alert, Call, Delivery, InboxEvent, RecordingArchive, Subscription

ALERT_EVENTS = ("alert.triggered", "alert.resolved")  # alerts/firing.py keys them `{type}:{id}`


@dataclass
class Removed:
    """What a removal deleted; `calls` are each deleted call's facts (call_events.facts)."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    deliveries: int = 0
    alerts: int = 0
    files: list[str] = field(default_factory=list)  # recording store keys

    def add(self, other: "Removed") -> None:
        self.calls += other.calls
        self.events += other.events
        self.deliveries += other.deliveries
        self.alerts += other.alerts
        self.files += other.files


def remove(session: Session, org_id: str, call_ids: Sequence[str]) -> Removed:
    """Delete these calls of the org (ids of other orgs' calls are ignored), locked first in id
    order (two removals never deadlock); its caller deletes `files` before it commits."""
    names = dict.fromkeys([*call_events.FACT_COLUMNS, *rollups.COLUMNS])
    calls = session.execute(
        select(*(Call.__table__.c[name] for name in names))
        .where(Call.org_id == org_id, Call.id.in_(call_ids))
        .order_by(Call.id)
        .with_for_update()
    ).all()
    if not calls:
        return Removed()
    ids = [call.id for call in calls]
    rollups.move(session, [(rollups.contribution(call._mapping), None) for call in calls])
    archived = session.execute(
        select(RecordingArchive.key, RecordingArchive.dual_key).where(
            RecordingArchive.call_id.in_(ids)
        )
    )
    files = [key for pair in archived for key in pair if key]
    alert_ids = list(session.scalars(select(Alert.id).where(Alert.call_id.in_(ids))))
    event_keys = [key for call_id in ids for key in call_events.keys_before_deletion(call_id)]
    event_keys += [f"{kind}:{alert_id}" for alert_id in alert_ids for kind in ALERT_EVENTS]
    removed = Removed(
        calls=[call_events.facts(call) for call in calls],
        events=count(session.execute(delete(InboxEvent).where(InboxEvent.call_id.in_(ids)))),
        deliveries=_forget_deliveries(session, org_id, event_keys),
        alerts=count(session.execute(delete(Alert).where(Alert.id.in_(alert_ids)))),
        files=files,
    )
    session.execute(delete(RecordingArchive).where(RecordingArchive.call_id.in_(ids)))
    session.execute(delete(Call).where(Call.id.in_(ids)))
    return removed


def forget_files(store: RecordingStore, keys: Sequence[str]) -> None:
    for key in keys:
        store.delete(key)


def _forget_deliveries(session: Session, org_id: str, keys: Sequence[str]) -> int:
    """The deliveries of these events, sent or not: their payloads carry the calls (found by the
    unique (subscription, event key) index)."""
    subscription_ids = list(
        session.scalars(select(Subscription.id).where(Subscription.org_id == org_id))
    )
    if not subscription_ids:
        return 0
    return count(
        session.execute(
            delete(Delivery).where(
                Delivery.subscription_id.in_(subscription_ids), Delivery.event_key.in_(keys)
            )
        )
    )


def count(result: Any) -> int:
    return int(result.rowcount or 0)
