"""Signed deliveries of events to subscribers: fan-out, attempts under a lease, retries, sweeps."""

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from callwatch import ids, signatures, tracing
from callwatch.db import insert_ignore, memo, transaction
from callwatch.downstream import subscriptions
from callwatch.errors import internal_error
from callwatch.outbound import ssrf
from callwatch.outbound.http import retry_after
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.tables import Delivery, DeliveryAttempt, Subscription

log = logging.getLogger("callwatch.deliveries")

Verdict = Literal["delivered", "retry", "failed", "gone"]
USER_AGENT = "callwatch-webhooks/1"
# A message may run a little before the time it was scheduled for (timer granularity).
DUE_SLACK = timedelta(seconds=0.1)
# A delivery the sweep re-sent is left alone this long while its message waits in the queue.
REQUEUE_AFTER = timedelta(seconds=120)
SWEEP_BATCH = 1000
RETRY_AFTER_CAP_S = 24 * 3600.0
BODY_LIMIT = 64 * 1024  # of a receiver's answer, read only so the connection can be reused
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


@dataclass(frozen=True)
class _Job:
    delivery_id: str
    subscription_id: str
    attempt_id: str
    url: str
    body: bytes
    secrets: list[str]
    lease_until: datetime
    failing: bool  # the subscription was failing when the attempt began


def deliver(rt: Runtime, delivery_id: str) -> float | None:
    """One attempt at a delivery; the countdown to the next attempt, if it is near enough for a
    queue countdown (later ones are left to the sweeper)."""
    with transaction(rt.sessions) as session:
        job = _claim(session, rt, delivery_id, rt.clock())
    if job is None:
        return None
    result, location = _send(rt.outbound, job, rt.clock(), rt.settings.delivery_timeout_s)
    with transaction(rt.sessions) as session:
        return _settle(session, rt, job, result, location, rt.clock())


def _claim(session: Session, rt: Runtime, delivery_id: str, now: datetime) -> _Job | None:
    delivery = session.scalars(
        select(Delivery).where(Delivery.id == delivery_id).with_for_update()
    ).one_or_none()
    if delivery is None or delivery.state != "pending":
        return None  # done already: a duplicate message ends here
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > now + DUE_SLACK:
        return None  # not due yet, or an attempt holds it (its claim moved the time on)
    earlier = session.execute(
        select(DeliveryAttempt.id, DeliveryAttempt.outcome).where(
            DeliveryAttempt.delivery_id == delivery_id
        )
    ).all()
    lost = [attempt_id for attempt_id, outcome in earlier if outcome == "sending"]
    if lost:
        session.execute(
            update(DeliveryAttempt)
            .where(DeliveryAttempt.id.in_(lost))
            .values(outcome="interrupted", error="the worker was lost mid-attempt")
        )
    subscription = session.get_one(Subscription, delivery.subscription_id)
    if not subscription.enabled:
        _end(delivery, "canceled", "subscription disabled", now)
        return None
    if delivery.attempts >= max_attempts(rt.settings):
        _end(delivery, "failed", f"gave up after {delivery.attempts} attempts", now)
        return None
    lease_until = now + timedelta(seconds=rt.settings.delivery_lease_s)
    delivery.attempts += 1
    delivery.lease_until = delivery.next_attempt_at = lease_until
    delivery.updated_at = now
    attempt = DeliveryAttempt(
        id=ids.new_id("att"),
        delivery_id=delivery_id,
        number=len(earlier) + 1,
        started_at=now,
        outcome="sending",
    )
    session.add(attempt)
    return _Job(
        delivery_id=delivery_id,
        subscription_id=subscription.id,
        attempt_id=attempt.id,
        url=subscription.url,
        body=_body(delivery.payload),
        secrets=subscriptions.signing_secrets(subscription, rt.vault, now),
        lease_until=lease_until,
        failing=subscription.failing_since is not None,
    )


def _body(stored: dict[str, Any]) -> bytes:
    """The payload's bytes, `{type, timestamp, data}` in that order (JSONB keeps its own)."""
    ordered = {key: stored[key] for key in ("type", "timestamp", "data")}
    return json.dumps(ordered, separators=(",", ":")).encode()


def _end(delivery: Delivery, state: str, error: str | None, now: datetime) -> None:
    delivery.state = state
    delivery.last_error = error
    delivery.next_attempt_at = delivery.lease_until = None
    delivery.updated_at = now


def _send(
    client: httpx.Client, job: _Job, now: datetime, timeout_s: float
) -> tuple[Result, str | None]:
    """POST the signed payload; what came back, and the Location of a redirect."""
    stamp = int(now.timestamp())
    signature = " ".join(
        signatures.sign(secret, job.delivery_id, stamp, job.body) for secret in job.secrets
    )
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": job.delivery_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
    }
    started = time.monotonic()
    host = urlsplit(job.url).hostname or ""  # not the URL: a subscriber's can hold a token
    attributes = {
        "http.request.method": "POST",
        "server.address": host,
        "callwatch.delivery_id": job.delivery_id,
        "callwatch.subscription_id": job.subscription_id,
    }
    with tracing.span("POST", tracing.SpanKind.CLIENT, attributes) as span:
        answer, location = _post(client, job, headers, timeout_s, started)
        span.set_attribute("callwatch.delivery_outcome", verdict(answer))
        if answer.status is not None:
            span.set_attribute("http.response.status_code", answer.status)
        return answer, location


def _post(
    client: httpx.Client, job: _Job, headers: dict[str, str], timeout_s: float, started: float
) -> tuple[Result, str | None]:
    def took() -> float:
        return round((time.monotonic() - started) * 1000, 1)

    try:
        # In total, not per read: a receiver dripping its answer cannot outlive the lease.
        with (
            ssrf.deadline(timeout_s),
            client.stream("POST", job.url, content=job.body, headers=headers) as response,
        ):
            _drain(response, started + timeout_s)
            answer = Result(
                response.status_code,
                retry_after_s=retry_after(response.headers.get("retry-after")),
                duration_ms=took(),
            )
            return answer, response.headers.get("location")
    except ssrf.TargetRefused as exc:
        return Result(None, f"refused: {exc}", duration_ms=took(), refused=True), None
    except httpx.TimeoutException as exc:
        error = f"timed out after {timeout_s:g} s ({type(exc).__name__})"
        return Result(None, error, duration_ms=took()), None
    except httpx.HTTPError as exc:
        return Result(None, f"{type(exc).__name__}: {exc}", duration_ms=took()), None
    except Exception as exc:  # a bug, not the receiver: retried like a failure, so bounded
        log.exception("delivery attempt crashed", extra={"delivery_id": job.delivery_id})
        return Result(None, internal_error(exc), duration_ms=took()), None


def _drain(response: httpx.Response, deadline: float) -> None:
    """Read a little of the answer, briefly, so a small one frees the connection for reuse."""
    read = 0
    try:
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > BODY_LIMIT or time.monotonic() > deadline:
                return
    except httpx.HTTPError:
        return


def _settle(
    session: Session,
    rt: Runtime,
    job: _Job,
    result: Result,
    location: str | None,
    now: datetime,
) -> float | None:
    delivery = session.scalars(
        select(Delivery).where(Delivery.id == job.delivery_id).with_for_update()
    ).one_or_none()
    if delivery is None:
        return None  # the subscription was deleted meanwhile
    outcome = verdict(result)
    error = None if outcome == "delivered" else describe(result, location)
    log.info(
        "delivery attempt",
        extra={
            "delivery_id": job.delivery_id,
            "subscription_id": job.subscription_id,
            "status": result.status,
            "verdict": outcome,
            "error": error,
        },
    )
    recorded, countdown = _apply(session, rt, job, delivery, result, outcome, error, now)
    session.execute(
        update(DeliveryAttempt)
        .where(DeliveryAttempt.id == job.attempt_id)
        .values(
            duration_ms=result.duration_ms,
            status_code=result.status,
            error=error,
            outcome=recorded,
        )
    )
    return countdown


def _apply(
    session: Session,
    rt: Runtime,
    job: _Job,
    delivery: Delivery,
    result: Result,
    outcome: Verdict,
    error: str | None,
    now: datetime,
) -> tuple[str, float | None]:
    """The attempt's result applied to the delivery (and its subscription): the attempt's
    outcome for the log, and the countdown to the next attempt."""
    if outcome == "delivered":
        if delivery.state != "delivered":  # whatever happened meanwhile, the receiver has it
            _end(delivery, "delivered", None, now)
            delivery.last_status = result.status
            delivery.delivered_at = now
        if job.failing:
            subscriptions.succeeded(session, job.subscription_id)
        return "delivered", None
    recorded = "disabled" if outcome == "gone" else outcome
    if delivery.state != "pending" or delivery.lease_until != job.lease_until:
        return recorded, None  # canceled, re-sent or re-claimed while we were sending
    delivery.last_status = result.status
    if outcome == "gone":
        _end(delivery, "failed", error, now)
        subscription = session.get_one(Subscription, job.subscription_id)
        if subscription.enabled:
            reason = f"the receiver answered 410 Gone at {now:%Y-%m-%d %H:%M:%SZ}"
            subscriptions.disable(session, subscription, reason, now)
        return recorded, None
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
        if outcome == "retry":
            error = f"gave up after {delivery.attempts} attempts: {error}"
        _end(delivery, "failed", error, now)
    else:
        _end(delivery, "pending", error, now)
        delivery.next_attempt_at = now + timedelta(seconds=delay)
    disable_after_s = rt.settings.subscription_disable_after_s
    subscriptions.failed(session, job.subscription_id, now, disable_after_s)
    if delivery.state != "pending" or delay is None or delay > rt.settings.max_countdown_s:
        return recorded, None
    return recorded, delay


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
