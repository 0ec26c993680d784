"""Settling a batch of attempts: the delivered in one statement, the others one by one (their
retry, giving up, or disabling the subscription), and every attempt's outcome for the log."""

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from callwatch.downstream import subscriptions
from callwatch.downstream.deliveries import Verdict, describe, retry_delay, verdict
from callwatch.downstream.posting import Sent
from callwatch.runtime import Runtime
from callwatch.tables import Delivery, DeliveryAttempt, Subscription

log = logging.getLogger("callwatch.deliveries")

_ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
_DELIVERIES = cast(Table, Delivery.__table__)


def settle(session: Session, rt: Runtime, sent: list[Sent], now: datetime) -> dict[str, float]:
    """The batch's answers recorded: the delivered in one statement, the others one by one
    (retry, give up, disable); the countdowns of the retries near enough for the queue."""
    delivered = [each for each in sent if verdict(each.result) == "delivered"]
    for status in sorted({each.result.status or 200 for each in delivered}):
        _delivered(
            session,
            [e.job.delivery_id for e in delivered if e.result.status == status],
            status,
            now,
        )
    if any(each.job.failing for each in delivered):
        subscriptions.succeeded(session, delivered[0].job.subscription_id)
    outcomes = [
        {"attempt_id": each.job.attempt_id, "v_outcome": "delivered", "v_error": None}
        | _timing(each)
        for each in delivered
    ]
    countdowns: dict[str, float] = {}
    for each in sent:
        outcome = verdict(each.result)
        if outcome == "delivered":
            continue
        recorded, error, countdown = _not_delivered(session, rt, each, outcome, now)
        outcomes.append(
            {"attempt_id": each.job.attempt_id, "v_outcome": recorded, "v_error": error}
            | _timing(each)
        )
        if countdown is not None:
            countdowns[each.job.delivery_id] = countdown
    for each in sent:
        _logged(each)
    session.execute(
        update(_ATTEMPTS)
        .where(_ATTEMPTS.c.id == bindparam("attempt_id"))
        .values(
            duration_ms=bindparam("v_duration_ms"),
            status_code=bindparam("v_status_code"),
            error=bindparam("v_error"),
            outcome=bindparam("v_outcome"),
        ),
        outcomes,
    )
    return countdowns


def _timing(each: Sent) -> dict[str, Any]:
    return {"v_duration_ms": each.result.duration_ms, "v_status_code": each.result.status}


def _delivered(session: Session, delivery_ids: Iterable[str], status: int, now: datetime) -> None:
    """Whatever happened meanwhile (a cancel, a re-claim), the receiver has it."""
    session.execute(
        update(_DELIVERIES)
        .where(_DELIVERIES.c.id.in_(list(delivery_ids)), _DELIVERIES.c.state != "delivered")
        .values(
            state="delivered",
            last_status=status,
            last_error=None,
            next_attempt_at=None,
            lease_until=None,
            delivered_at=now,
            updated_at=now,
        )
    )


def _logged(each: Sent) -> None:
    outcome = verdict(each.result)
    log.info(
        "delivery attempt",
        extra={
            "delivery_id": each.job.delivery_id,
            "subscription_id": each.job.subscription_id,
            "status": each.result.status,
            "verdict": outcome,
            "error": None if outcome == "delivered" else describe(each.result, each.location),
        },
    )


def _not_delivered(
    session: Session, rt: Runtime, each: Sent, outcome: Verdict, now: datetime
) -> tuple[str, str, float | None]:
    """A failed attempt applied to its delivery (and subscription): the attempt's outcome and
    error for the log, and the countdown to the next attempt."""
    job, result = each.job, each.result
    error = describe(result, each.location)
    recorded = "disabled" if outcome == "gone" else outcome
    delivery = session.scalars(
        select(Delivery).where(Delivery.id == job.delivery_id).with_for_update()
    ).one_or_none()
    if delivery is None or delivery.state != "pending" or delivery.lease_until != job.lease_until:
        return recorded, error, None  # deleted, canceled, re-sent or re-claimed meanwhile
    delivery.last_status = result.status
    if outcome == "gone":
        _end(delivery, "failed", error, now)
        subscription = session.get_one(Subscription, job.subscription_id)
        if subscription.enabled:
            reason = f"the receiver answered 410 Gone at {now:%Y-%m-%d %H:%M:%SZ}"
            subscriptions.disable(session, subscription, reason, now)
        return recorded, error, None
    delay = None
    if outcome == "retry":
        delay = retry_delay(
            delivery.attempts,
            schedule=rt.settings.delivery_retry_s,
            retry_after_s=result.retry_after_s,
            jitter=rt.rng.random(),
        )
    if delay is None:
        recorded = "failed"
        gave_up = f"gave up after {delivery.attempts} attempts: {error}"
        _end(delivery, "failed", gave_up if outcome == "retry" else error, now)
    else:
        _end(delivery, "pending", error, now)
        delivery.next_attempt_at = now + timedelta(seconds=delay)
    subscriptions.failed(
        session, job.subscription_id, now, rt.settings.subscription_disable_after_s
    )
    if delivery.state != "pending" or delay is None or delay > rt.settings.max_countdown_s:
        return recorded, error, None
    return recorded, error, delay


def _end(delivery: Delivery, state: str, error: str | None, now: datetime) -> None:
    delivery.state = state
    delivery.last_error = error
    delivery.next_attempt_at = delivery.lease_until = None
    delivery.updated_at = now
