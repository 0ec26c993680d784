"""Deliveries of events to subscribers: fan-out, the verdict on an answer, the retry schedule,
sweeps. Attempts (claimed in batches, sent, settled) are in `attempts`; the POST in `posting`."""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from callwatch import ids
from callwatch.db import insert_ignore, memo
from callwatch.downstream import subscriptions
from callwatch.settings import Settings
from callwatch.tables import Delivery, Subscription

Verdict = Literal["delivered", "retry", "failed", "gone"]
# A message may run a little before the time it was scheduled for (timer granularity).
DUE_SLACK = timedelta(seconds=0.1)
# A delivery the sweep re-sent is left alone this long while its message waits in the queue.
REQUEUE_AFTER = timedelta(seconds=120)
SWEEP_BATCH = 1000
RETRY_AFTER_CAP_S = 24 * 3600.0
KEY_LENGTH = 200


@dataclass(frozen=True)
class Result:
    """What one attempt got: a status (None: no HTTP answer) or the error instead."""

    status: int | None
    error: str | None = None
    retry_after_s: float | None = None
    duration_ms: float | None = None
    refused: bool = False  # the SSRF guard refused the address


def verdict(result: Result) -> Verdict:
    """2xx delivered; 410 gone (disables); 408, 429, 5xx, timeouts and connection errors are
    retried; anything else (3xx, which is never followed, other 4xx, a refused address) fails."""
    status = result.status
    if status is None:
        return "failed" if result.refused else "retry"
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "failed"


def describe(result: Result, location: str | None = None) -> str:
    if result.status is None:
        return result.error or "no answer"
    text = f"HTTP {result.status}"
    if 300 <= result.status < 400:
        text += f" redirect to {location or '?'} (redirects are not followed)"
    return text


def retry_delay(
    attempts: int, *, schedule: list[float], retry_after_s: float | None, jitter: float
) -> float | None:
    """The wait after `attempts` failed attempts of this round: the schedule's next wait
    (jitter in [0, 1) → ±50 %), Retry-After a floor (capped at a day); None when the schedule
    is used up (a round is one attempt more than the schedule has waits)."""
    if attempts < 1 or attempts > len(schedule):
        return None
    delay = schedule[attempts - 1] * (0.5 + jitter)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, RETRY_AFTER_CAP_S))
    return delay


def max_attempts(settings: Settings) -> int:
    return len(settings.delivery_retry_s) + 1


def payload(event_type: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    stamp = now.isoformat().replace("+00:00", "Z")
    return {"type": event_type, "timestamp": stamp, "data": data}


def _enabled(session: Session, org_id: str) -> list[Subscription]:
    """The org's enabled subscriptions, read once per transaction (a batch fans out many)."""

    def read() -> list[Subscription]:
        query = select(Subscription).where(
            Subscription.org_id == org_id, Subscription.enabled.is_(True)
        )
        return list(session.scalars(query))

    return memo(session, ("subscriptions", org_id), read)


def _key(event_key: str) -> str:
    if len(event_key) <= KEY_LENGTH:
        return event_key
    return "sha256:" + hashlib.sha256(event_key.encode()).hexdigest()


def fan_out(
    session: Session,
    org_id: str,
    event_type: str,
    data: dict[str, Any],
    event_key: str,
    now: datetime,
    more: Callable[[], dict[str, Any]] | None = None,
) -> list[str]:
    """One delivery per enabled subscription of the org that wants this event; the ids of those
    created now (fanning the same event out again creates none). `more` adds to the data what
    filters do not look at, made only if a subscription wants the event."""
    wanted = [
        subscription
        for subscription in _enabled(session, org_id)
        if event_type in subscription.event_types
        and subscriptions.matches(subscription.filters, data)
    ]
    if not wanted:
        return []
    body = payload(event_type, data | more() if more else data, now)
    table = Delivery.__table__
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT DO NOTHING.
    statement = insert_ignore(session, table).returning(table.c.id)  # type: ignore[arg-type]
    created = []
    for subscription in wanted:
        delivery_id = ids.new_id("msg")
        row = {
            "id": delivery_id,
            "org_id": org_id,
            "subscription_id": subscription.id,
            "event_type": event_type,
            "event_key": _key(event_key),
            "payload": body,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        if session.execute(statement, row).scalar_one_or_none() is not None:
            created.append(delivery_id)
    return created


def overdue(session: Session, now: datetime) -> list[str]:
    """Deliveries due whose queue message may have been lost (a flushed Redis, a killed worker,
    a wait too long for a countdown), reserved for REQUEUE_AFTER so the next sweeps leave them
    alone while the message this one sends is queued."""
    due = list(
        session.scalars(
            select(Delivery.id)
            .where(
                Delivery.state == "pending",
                Delivery.next_attempt_at <= now,
                or_(Delivery.lease_until.is_(None), Delivery.lease_until <= now),
            )
            .order_by(Delivery.next_attempt_at)
            .limit(SWEEP_BATCH)
        )
    )
    if due:
        session.execute(
            update(Delivery).where(Delivery.id.in_(due)).values(lease_until=now + REQUEUE_AFTER)
        )
    return due
