"""The retention purge (a periodic task): what passed each org's retention goes, in batches.

- Calls older than `retention_days` (by their start) are removed with everything of theirs
  (removal.py), their deliveries and window alerts older than that too.
- Raw webhook bodies older than `raw_event_retention_days` are emptied: the parsed event stays
  with its call, which late events and replays rebuild from; an event that never became part of
  a call (quarantined, or applied and waiting for the call it joins) is deleted whole. The
  inbox's ids sort by time, so each org's walk goes on from where the last one stopped
  (`org_settings.raw_purged_through`), along the primary key.

Each batch is its own short transaction (`purge_batch` rows), so no lock is held for long and
intake never waits on the purge; after each batch the purge rests `purge_rest` times as long as
the batch took, leaving that share of the machine to intake (bench/purge.py measures it).
"""

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from redis.exceptions import LockError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from callwatch import ids
from callwatch.db import transaction
from callwatch.orgs import data_settings
from callwatch.recordings.store import store_for
from callwatch.retention import counters, removal
from callwatch.runtime import Runtime
from callwatch.tables import Alert, Call, Delivery, InboxEvent, Org, OrgSettings, Subscription

log = logging.getLogger("callwatch.retention")


@dataclass
class Purged:
    """What one purge run deleted (the `/metrics` counters' kinds)."""

    calls: int = 0
    events: int = 0
    raw_bodies: int = 0
    recordings: int = 0
    deliveries: int = 0
    alerts: int = 0

    def add(self, other: "Purged") -> None:
        for name in self.counts():
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def counts(self) -> dict[str, int]:
        return {item.name: getattr(self, item.name) for item in fields(self)}

    def counted(self) -> dict[str, int]:
        """As `counters` keys them."""
        return {counters.PURGED + name: value for name, value in self.counts().items()}


@dataclass(frozen=True)
class Retention:
    org_id: str
    calls_before: datetime | None
    raw_before: datetime | None


def retentions(session: Session, now: datetime) -> list[Retention]:
    """Every org's cut-offs (an org that never chose has the defaults: raw bodies 30 days)."""
    found = []
    for org_id in session.scalars(select(Org.id).order_by(Org.id)):
        chosen = data_settings.get(session, org_id)
        found.append(
            Retention(
                org_id,
                _before(now, chosen.retention_days),
                _before(now, chosen.raw_event_retention_days),
            )
        )
    return found


def _before(now: datetime, days: int | None) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def purge_calls(runtime: Runtime, org_id: str, before: datetime, batch: int) -> Purged | None:
    """One batch of the org's calls that started before `before`, removed; None: none left."""
    store = store_for(runtime.settings)
    with transaction(runtime.sessions) as session:
        call_ids = list(
            session.scalars(
                select(Call.id)
                .where(Call.org_id == org_id, Call.started_at < before)
                .order_by(Call.started_at)
                .limit(batch)
            )
        )
        if not call_ids:
            return None
        removed = removal.remove(session, org_id, call_ids)
        removal.forget_files(store, removed.files)
    return Purged(
        calls=len(removed.calls),
        events=removed.events,
        recordings=len(removed.files),
        deliveries=removed.deliveries,
        alerts=removed.alerts,
    )


def purge_history(runtime: Runtime, org_id: str, before: datetime, batch: int) -> Purged | None:
    """One batch of the org's deliveries and window alerts from before `before` (a call's own
    went with it); None: none left."""
    with transaction(runtime.sessions) as session:
        subscriptions = select(Subscription.id).where(Subscription.org_id == org_id)
        old_deliveries = (
            select(Delivery.id)
            .where(Delivery.subscription_id.in_(subscriptions), Delivery.created_at < before)
            .limit(batch)
        )
        deliveries = session.execute(delete(Delivery).where(Delivery.id.in_(old_deliveries)))
        old_alerts = (
            select(Alert.id)
            .where(Alert.org_id == org_id, Alert.triggered_at < before, Alert.state != "open")
            .limit(batch)
        )
        alerts = session.execute(delete(Alert).where(Alert.id.in_(old_alerts)))
    purged = Purged(deliveries=removal.count(deliveries), alerts=removal.count(alerts))
    return None if purged == Purged() else purged


def purge_raw_bodies(runtime: Runtime, org_id: str, before: datetime, batch: int) -> Purged | None:
    """The next `batch` of the org's inbox rows received before `before`: raw bodies emptied,
    events without a call deleted; None: none left."""
    limit = ids.new_id("evt", millis=int(before.timestamp() * 1000), bits=0)
    with transaction(runtime.sessions) as session:
        mark = _raw_mark(session, org_id, runtime.clock())
        walked = list(
            session.scalars(
                select(InboxEvent.id)
                .where(InboxEvent.id > mark, InboxEvent.id < limit, InboxEvent.org_id == org_id)
                .order_by(InboxEvent.id)
                .limit(batch)
            )
        )
        if not walked:
            return None
        callless = session.execute(
            delete(InboxEvent).where(
                InboxEvent.id.in_(walked),
                InboxEvent.call_id.is_(None),
                or_(InboxEvent.quarantined_at.is_not(None), InboxEvent.processed_at.is_not(None)),
            )
        )
        emptied = session.execute(
            update(InboxEvent)
            .where(InboxEvent.id.in_(walked), InboxEvent.raw_body != "")
            .values(raw_body="")
        )
        session.execute(
            update(OrgSettings)
            .where(OrgSettings.org_id == org_id)
            .values(raw_purged_through=walked[-1])
        )
    return Purged(events=removal.count(callless), raw_bodies=removal.count(emptied))


def _raw_mark(session: Session, org_id: str, now: datetime) -> str:
    """Where the org's raw-body walk stopped, its settings row locked (one walk at a time)."""
    return data_settings.locked_row(session, org_id, now).raw_purged_through or ""


Step = Callable[[Runtime, str, datetime, int], Purged | None]


def _steps(found: list[Retention]) -> Iterator[tuple[Step, str, datetime]]:
    for retention in found:
        if retention.calls_before is not None:
            yield purge_calls, retention.org_id, retention.calls_before
            yield purge_history, retention.org_id, retention.calls_before
        if retention.raw_before is not None:
            yield purge_raw_bodies, retention.org_id, retention.raw_before


def run(runtime: Runtime, on_batch: Callable[[Purged], None] | None = None) -> Purged:
    """Purge until nothing is left to purge or `purge_budget_s` is spent (the next run goes
    on). `on_batch` hears each batch's counts once it is committed."""
    settings = runtime.settings
    deadline = time.monotonic() + settings.purge_budget_s
    with transaction(runtime.sessions) as session:
        found = retentions(session, runtime.clock())
    total = Purged()
    for step, org_id, before in _steps(found):
        # A batch at least, then on while the budget lasts: every run gets somewhere.
        began = time.monotonic()
        while (purged := step(runtime, org_id, before, settings.purge_batch)) is not None:
            total.add(purged)
            runtime.count(purged.counted())
            if on_batch is not None:
                on_batch(purged)
            if time.monotonic() >= deadline:
                break
            time.sleep((time.monotonic() - began) * settings.purge_rest)
            began = time.monotonic()
        if time.monotonic() >= deadline:
            break
    if total != Purged():
        log.info("retention purge", extra=total.counts())
    return total


RUNNING = "callwatch:purge:running"


def run_alone(runtime: Runtime) -> bool:
    """`run`, unless another process is running one (a Redis lock that lapses should its holder
    die); whether it ran."""
    redis = runtime.redis
    if redis is None:
        run(runtime)
        return True
    lapse_s = int(runtime.settings.purge_budget_s) + 60
    lock = redis.lock(RUNNING, timeout=lapse_s, blocking=False)
    if not lock.acquire():
        return False
    try:
        run(runtime)
    finally:
        with contextlib.suppress(LockError):
            lock.release()
    return True
