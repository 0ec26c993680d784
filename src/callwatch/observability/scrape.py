"""What `GET /metrics` reads at each scrape: bounded database counts and Redis queue state.

Every database read is bounded: backlogs through the indexes on their state columns, and recent
work (deliveries) through the (subscription, created_at) index over the last WINDOW_S seconds.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from callwatch.downstream.streams import ALERTS_STREAM, ASSEMBLY_BUCKETS_S, CALLS_STREAM, COUNTERS
from callwatch.observability.promtext import Family, Sample, histogram, observe
from callwatch.pipeline import quarantine
from callwatch.queue import QUEUE
from callwatch.tables import (
    Alert,
    AlertRule,
    Call,
    Delivery,
    DeliveryAttempt,
    InboxEvent,
    PendingJoin,
    Subscription,
)

WINDOW_S = 300.0
UNFINISHED = ("pending", "fetching", "awaiting_recording", "failed")
OUTSTANDING = ("pending", "failed")
DELIVERY_STATES = ("pending", "delivered", "failed", "canceled")
ATTEMPT_OUTCOMES = ("delivered", "retry", "failed", "disabled", "interrupted", "sending")
ALERT_TYPES = ("alert.triggered", "alert.resolved")
# From an event to its delivery, first attempts (tens of ms) to retries (hours).
DELIVERY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 3600.0)
UNACKED = "unacked"  # kombu's hash of messages a worker has taken but not acknowledged


def _by(rows: Sequence[Any], keys: Sequence[str], label: str) -> list[Sample]:
    """One sample per key (0 when absent), then any other key found, labelled `label`."""
    found = {key: count for key, count in rows}
    others = sorted(key for key in found if key not in keys)
    return [Sample(found.get(key, 0), ((label, key),)) for key in [*keys, *others]]


def database(session: Session, now: datetime) -> list[Family]:
    since = now - timedelta(seconds=WINDOW_S)
    inbox = session.scalar(
        select(func.count())
        .select_from(InboxEvent)
        .where(InboxEvent.processed_at.is_(None), InboxEvent.quarantined_at.is_(None))
    )
    quarantined = quarantine.count(session)
    waiting = session.scalar(select(func.count(distinct(PendingJoin.inbox_id))))
    calls = session.execute(
        select(Call.assembly_state, func.count())
        .where(Call.assembly_state.in_(UNFINISHED))
        .group_by(Call.assembly_state)
    ).all()
    outstanding = session.execute(
        select(Delivery.state, func.count())
        .where(Delivery.state.in_(OUTSTANDING))
        .group_by(Delivery.state)
    ).all()
    recent = session.execute(
        select(Delivery.state, Delivery.created_at, Delivery.delivered_at)
        .join(Subscription, Subscription.id == Delivery.subscription_id)
        .where(Delivery.created_at >= since)
    ).all()
    attempts = session.execute(
        select(DeliveryAttempt.outcome, func.count())
        .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
        .join(Subscription, Subscription.id == Delivery.subscription_id)
        .where(Delivery.created_at >= since)
        .group_by(DeliveryAttempt.outcome)
    ).all()
    open_alerts = session.scalar(
        select(func.count())
        .select_from(AlertRule)
        .join(Alert, Alert.rule_id == AlertRule.id)
        .where(AlertRule.kind == "window", Alert.state == "open")
    )
    states: dict[str, int] = {}
    for state, _, _ in recent:
        states[state] = states.get(state, 0) + 1
    latencies = [
        max(0.0, (delivered - created).total_seconds())
        for state, created, delivered in recent
        if state == "delivered" and delivered is not None
    ]
    buckets, total = observe(latencies, DELIVERY_BUCKETS_S)
    minutes = f"{WINDOW_S / 60:g} minutes"
    return [
        Family(
            "callwatch_inbox_pending",
            "gauge",
            "Webhook events stored but not yet applied to their call.",
            [Sample(inbox or 0)],
        ),
        Family(
            "callwatch_inbox_quarantined",
            "gauge",
            "Webhook events that could not be applied, kept with the reason "
            "(GET /api/quarantine; `callwatch replay --quarantined` retries them).",
            [Sample(quarantined)],
        ),
        Family(
            "callwatch_inbox_waiting_for_call",
            "gauge",
            "Webhook events that name another source's call (fixa's analyses) not known yet: "
            "kept, and applied when that call arrives.",
            [Sample(waiting or 0)],
        ),
        Family(
            "callwatch_calls_unfinished",
            "gauge",
            "Calls whose record is not assembled, by assembly state (failed: gave up).",
            _by(calls, UNFINISHED, "assembly_state"),
        ),
        Family(
            "callwatch_deliveries_outstanding",
            "gauge",
            "Deliveries waiting for an attempt or a retry (pending) or failed for good.",
            _by(outstanding, OUTSTANDING, "state"),
        ),
        Family(
            "callwatch_recent_deliveries",
            "gauge",
            f"Deliveries created in the last {minutes}, by state now.",
            _by(list(states.items()), DELIVERY_STATES, "state"),
        ),
        histogram(
            "callwatch_recent_delivery_latency_seconds",
            f"From event to delivered, for deliveries created in the last {minutes} "
            "(a sliding window: use the buckets without rate()).",
            DELIVERY_BUCKETS_S,
            buckets,
            total,
        ),
        Family(
            "callwatch_recent_delivery_attempts",
            "gauge",
            f"Attempts at the deliveries created in the last {minutes}, by outcome.",
            _by(attempts, ATTEMPT_OUTCOMES, "outcome"),
        ),
        Family(
            "callwatch_window_alerts_open",
            "gauge",
            "Window alerts firing now (open until their condition clears).",
            [Sample(open_alerts or 0)],
        ),
    ]


def redis(client: Redis) -> list[Family]:
    pipe = client.pipeline(transaction=False)
    pipe.llen(QUEUE)
    pipe.hlen(UNACKED)
    pipe.xlen(CALLS_STREAM)
    pipe.xlen(ALERTS_STREAM)
    pipe.hgetall(COUNTERS)
    queued, unacked, calls, alerts, raw = pipe.execute()
    counters = {key.decode(): float(value) for key, value in raw.items()}
    assembled = sorted(
        (key.split("|", 1)[1], value)
        for key, value in counters.items()
        if key.startswith("calls_assembled|")
    )
    buckets = {
        key.split("|", 1)[1]: int(value)
        for key, value in counters.items()
        if key.startswith("assembly_s|") and key != "assembly_s|sum"
    }
    return [
        Family(
            "callwatch_queue_messages",
            "gauge",
            "Task messages waiting in the Celery queue.",
            [Sample(queued, (("queue", QUEUE),))],
        ),
        Family(
            "callwatch_queue_unacked",
            "gauge",
            "Task messages taken by a worker and not yet acknowledged (includes countdowns).",
            [Sample(unacked)],
        ),
        Family(
            "callwatch_stream_entries",
            "gauge",
            "Entries in each ops stream (trimmed to about CALLWATCH_STREAM_MAXLEN).",
            [
                Sample(calls, (("stream", CALLS_STREAM),)),
                Sample(alerts, (("stream", ALERTS_STREAM),)),
            ],
        ),
        Family(
            "callwatch_calls_assembled_total",
            "counter",
            "Calls assembled, by provider (counted in Redis by the workers).",
            [Sample(value, (("provider", provider),)) for provider, value in assembled],
        ),
        histogram(
            "callwatch_assembly_latency_seconds",
            "From the end of a call (platform clock) to its assembled record.",
            ASSEMBLY_BUCKETS_S,
            buckets,
            counters.get("assembly_s|sum", 0.0),
        ),
        Family(
            "callwatch_alerts_total",
            "counter",
            "Alerts triggered and resolved (counted in Redis by the workers).",
            [Sample(counters.get(f"alerts|{kind}", 0), (("type", kind),)) for kind in ALERT_TYPES],
        ),
    ]
