"""Delivery attempts in batches: claim a subscription's due deliveries in one statement, send them
concurrently on the process's pooled client, settle them in one transaction.

A batch is one subscription's: a slow or failing subscriber holds up only its own deliveries,
and its rate limit is taken once per batch. The message that starts a batch names one delivery;
the batch claims the due deliveries of that delivery's subscription, oldest first, so the
messages of deliveries another batch took find nothing to do. A claim leases its deliveries (the
lease is the next attempt time, so nothing claims them again until it lapses) and records each
attempt as `sending`: a worker lost between the send and the settle leaves them so, the lease
lapses, the sweeper re-sends, and the next claim marks them `interrupted` and sends again — each
delivery reaches its receiver once, or again after such a loss (its `webhook-id` says so).
"""

import contextvars
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import redis
from sqlalchemy import Integer, Table, bindparam, case, func, insert, select, update
from sqlalchemy.orm import Session

from callwatch import ids
from callwatch.db import transaction
from callwatch.downstream import subscriptions
from callwatch.downstream.deliveries import DUE_SLACK, max_attempts
from callwatch.downstream.posting import Job, Sent, send
from callwatch.downstream.settling import settle
from callwatch.downstream.streams import RATE_LIMITED
from callwatch.ratelimits import Buckets, RateLimit, bucket_key
from callwatch.runtime import Runtime
from callwatch.tables import Delivery, DeliveryAttempt, Subscription

log = logging.getLogger("callwatch.deliveries")

_ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
_DELIVERIES = cast(Table, Delivery.__table__)


@dataclass
class Batch:
    jobs: list[Job] = field(default_factory=list)
    # Deliveries the rate limit put off: when each is due (seconds from now).
    deferred: dict[str, float] = field(default_factory=dict)


def deliver(rt: Runtime, delivery_id: str) -> dict[str, float]:
    """Attempt the due deliveries of `delivery_id`'s subscription; the countdowns of the
    messages to send for what comes next (retries and rate-limited deliveries near enough for
    a queue countdown; later ones are left to the sweeper)."""
    with transaction(rt.sessions) as session:
        batch = claim(session, rt, delivery_id, rt.clock())
    if batch.deferred:
        rt.count({RATE_LIMITED: len(batch.deferred)})
    sent = _send_all(rt, batch.jobs)
    countdowns = {
        each: delay
        for each, delay in batch.deferred.items()
        if delay <= rt.settings.max_countdown_s
    }
    if sent:
        with transaction(rt.sessions) as session:
            countdowns |= settle(session, rt, sent, rt.clock())
    return countdowns


def _send_all(rt: Runtime, jobs: list[Job]) -> list[Sent]:
    now, timeout_s = rt.clock(), rt.settings.delivery_timeout_s
    if len(jobs) <= 1:
        return [send(rt.outbound, job, now, timeout_s) for job in jobs]
    # Each send in a copy of this context: its span is a child of the task's.
    futures = [
        rt.senders.submit(contextvars.copy_context().run, send, rt.outbound, job, now, timeout_s)
        for job in jobs
    ]
    return [future.result() for future in futures]


def claim(session: Session, rt: Runtime, delivery_id: str, now: datetime) -> Batch:
    """Lease the due deliveries of `delivery_id`'s subscription (up to the batch size, and to
    what its rate limit grants now) and record their attempts as `sending`."""
    subscription = session.scalars(
        select(Subscription)
        .join(Delivery, Delivery.subscription_id == Subscription.id)
        .where(Delivery.id == delivery_id)
    ).one_or_none()
    if subscription is None:
        return Batch()  # the subscription (and with it the delivery) was deleted
    if not subscription.enabled:
        _cancel_due(session, subscription.id, now)
        return Batch()
    limit = subscriptions.rate_limit_of(subscription)
    size = (
        rt.settings.delivery_batch
        if limit is None
        else min(rt.settings.delivery_batch, limit.burst or 1)
    )
    lease_until = now + timedelta(seconds=rt.settings.delivery_lease_s)
    claimed = _lease(session, subscription.id, size, now, lease_until)
    if not claimed:
        return Batch()
    batch = Batch()
    if limit is not None:
        claimed, batch.deferred = _within(session, rt, subscription.id, limit, claimed, now)
    ceiling = max_attempts(rt.settings)
    spent = [row for row in claimed if row.attempts > ceiling]
    for row in spent:
        _give_up(session, row.id, row.attempts - 1, now)
    claimed = [row for row in claimed if row.attempts <= ceiling]
    if not claimed:
        return batch
    numbers = _next_numbers(session, [row.id for row in claimed])
    secrets = subscriptions.signing_secrets(subscription, rt.vault, now)
    attempts = []
    for row in claimed:
        attempt_id = ids.new_id("att")
        attempts.append(
            {
                "id": attempt_id,
                "delivery_id": row.id,
                "number": numbers.get(row.id, 1),
                "started_at": now,
                "outcome": "sending",
            }
        )
        batch.jobs.append(
            Job(
                delivery_id=row.id,
                subscription_id=subscription.id,
                attempt_id=attempt_id,
                url=subscription.url,
                body=_body(row.payload),
                secrets=secrets,
                lease_until=lease_until,
                failing=subscription.failing_since is not None,
            )
        )
    session.execute(insert(_ATTEMPTS), attempts)
    return batch


def _lease(
    session: Session, subscription_id: str, size: int, now: datetime, lease_until: datetime
) -> list[Any]:
    """Up to `size` due deliveries of the subscription, oldest first, leased in one statement
    (rows another worker is claiming are skipped, not waited for); in that order."""
    due = (
        select(Delivery.id)
        .where(
            Delivery.subscription_id == subscription_id,
            Delivery.state == "pending",
            Delivery.next_attempt_at <= now + DUE_SLACK,
        )
        .order_by(Delivery.next_attempt_at, Delivery.created_at)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(_DELIVERIES)
        .where(_DELIVERIES.c.id.in_(due.scalar_subquery()))
        .values(
            attempts=_DELIVERIES.c.attempts + 1,
            lease_until=lease_until,
            next_attempt_at=lease_until,
            updated_at=now,
        )
        .returning(
            _DELIVERIES.c.id,
            _DELIVERIES.c.attempts,
            _DELIVERIES.c.payload,
            _DELIVERIES.c.created_at,
        )
    )
    rows = list(session.execute(statement))
    return sorted(rows, key=lambda row: (row.created_at, row.id))


def _within(
    session: Session,
    rt: Runtime,
    subscription_id: str,
    limit: RateLimit,
    claimed: list[Any],
    now: datetime,
) -> tuple[list[Any], dict[str, float]]:
    """The claimed deliveries the subscription's rate limit lets through now, one Redis call
    for the batch; the rest are released unattempted, due again one by one as tokens come
    (in their order, spaced at the rate), and their countdowns."""
    burst = limit.burst or 1
    if rt.redis is None:
        return claimed, {}
    try:
        granted, wait_s = Buckets(rt.redis).take(
            bucket_key("subscription", subscription_id), limit.per_second, burst, len(claimed)
        )
    except (redis.RedisError, OSError) as exc:
        # As on intake: a limit protects a subscriber, losing Redis must not stop deliveries.
        log.warning("rate limit unavailable; delivering", extra={"error": type(exc).__name__})
        return claimed, {}
    if granted >= len(claimed):
        return claimed, {}
    first = max(wait_s, 1 / limit.per_second)
    deferred = {row.id: first + n / limit.per_second for n, row in enumerate(claimed[granted:])}
    _release(session, deferred, now)
    return claimed[:granted], deferred


def _release(session: Session, deferred: dict[str, float], now: datetime) -> None:
    """Unclaimed: the attempt taken back (a wait for the limit is not a failed attempt), due
    again after its wait."""
    session.execute(
        update(_DELIVERIES)
        .where(_DELIVERIES.c.id == bindparam("delivery_id"))
        .values(
            attempts=_DELIVERIES.c.attempts - 1,
            lease_until=None,
            next_attempt_at=bindparam("due_at"),
            updated_at=now,
        ),
        [
            {"delivery_id": each, "due_at": now + timedelta(seconds=wait)}
            for each, wait in deferred.items()
        ],
    )


def _next_numbers(session: Session, delivery_ids: list[str]) -> dict[str, int]:
    """Each delivery's next attempt number (1 for those never tried, left out); attempts lost
    mid-send (still `sending`: their lease lapsed) marked `interrupted`."""
    rows = session.execute(
        select(
            DeliveryAttempt.delivery_id,
            func.count(),
            func.sum(case((DeliveryAttempt.outcome == "sending", 1), else_=0)).cast(Integer),
        )
        .where(DeliveryAttempt.delivery_id.in_(delivery_ids))
        .group_by(DeliveryAttempt.delivery_id)
    ).all()
    lost = [delivery_id for delivery_id, _, sending in rows if sending]
    if lost:
        session.execute(
            update(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(lost), DeliveryAttempt.outcome == "sending")
            .values(outcome="interrupted", error="the worker was lost mid-attempt")
            .execution_options(synchronize_session=False)
        )
    return {delivery_id: count + 1 for delivery_id, count, _ in rows}


def _cancel_due(session: Session, subscription_id: str, now: datetime) -> None:
    """A disabled subscription's pending deliveries (disabling cancels them; one that raced
    it ends here)."""
    session.execute(
        update(Delivery)
        .where(Delivery.subscription_id == subscription_id, Delivery.state == "pending")
        .values(
            state="canceled",
            last_error="subscription disabled",
            next_attempt_at=None,
            lease_until=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def _give_up(session: Session, delivery_id: str, attempts: int, now: datetime) -> None:
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(
            attempts=attempts,
            state="failed",
            last_error=f"gave up after {attempts} attempts",
            next_attempt_at=None,
            lease_until=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def _body(stored: dict[str, Any]) -> bytes:
    """The payload's bytes, `{type, timestamp, data}` in that order (JSONB keeps its own)."""
    ordered = {key: stored[key] for key in ("type", "timestamp", "data")}
    return json.dumps(ordered, separators=(",", ":")).encode()
