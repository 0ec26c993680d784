"""What `GET /metrics` reads at each scrape: bounded database counts and Redis queue state.

Every database read is bounded: backlogs through the indexes on their state columns, and recent
work (deliveries) through the (subscription, created_at) index over the last WINDOW_S seconds.
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis import Redis
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from callwatch.downstream.streams import (
    ALERTS_STREAM,
    ASSEMBLY_BUCKETS_S,
    CALLS_STREAM,
    HEARTBEATS,
    RATE_LIMITED,
    bucket_of,
)
from callwatch.pipeline import quarantine
from callwatch.queue import QUEUE
from callwatch.recordings import copying
from callwatch.retention import counters as retention_counters
from callwatch.retention import purge
from callwatch.runtime import COUNTERS
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

PURGED_KINDS = tuple(purge.Purged().counts())

WINDOW_S = 300.0
UNFINISHED = ("pending", "fetching", "awaiting_recording", "failed")
OUTSTANDING = ("pending", "failed")
DELIVERY_STATES = ("pending", "delivered", "failed", "canceled")
ATTEMPT_OUTCOMES = ("delivered", "retry", "failed", "disabled", "interrupted", "sending")
ALERT_TYPES = ("alert.triggered", "alert.resolved")
# From an event to its delivery, first attempts (tens of ms) to retries (hours).
DELIVERY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 3600.0)
UNACKED = "unacked"  # kombu's hash of messages a worker has taken but not acknowledged


def gauge(name: str, help: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help, value=value)


def by(name: str, help: str, label: str, rows: Sequence[Any], keys: Sequence[str]) -> Metric:
    """A gauge with one sample per key (0 when absent), then any other key found."""
    found = {key: count for key, count in rows}
    others = sorted(key for key in found if key not in keys)
    family = GaugeMetricFamily(name, help, labels=[label])
    for key in [*keys, *others]:
        family.add_metric([key], found.get(key, 0))
    return family


def observe(values: Iterable[float], bounds: Sequence[float]) -> tuple[dict[str, int], float]:
    """The count in each bucket (by `le`) and the sum of `values`."""
    counts: dict[str, int] = {}
    total = 0.0
    for value in values:
        le = bucket_of(value, bounds)
        counts[le] = counts.get(le, 0) + 1
        total += value
    return counts, total


def cumulative(bounds: Sequence[float], counts: Mapping[str, int]) -> list[tuple[str, float]]:
    """The cumulative `(le, count)` buckets from the count in each (keyed by its `le`).

    `le` is written as `{bound:g}` ("1", not prometheus-client's "1.0"), as /metrics always has:
    dashboards and alerts that name a bucket keep working.
    """
    buckets, running = [], 0
    for le in [*(f"{bound:g}" for bound in bounds), "+Inf"]:
        running += counts.get(le, 0)
        buckets.append((le, float(running)))
    return buckets


def histogram(
    name: str, help: str, bounds: Sequence[float], counts: Mapping[str, int], total: float
) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, help, buckets=cumulative(bounds, counts), sum_value=total)


def database(session: Session, now: datetime) -> list[Metric]:
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
        gauge(
            "callwatch_inbox_pending",
            "Webhook events stored but not yet applied to their call.",
            inbox or 0,
        ),
        gauge(
            "callwatch_inbox_quarantined",
            "Webhook events that could not be applied, kept with the reason "
            "(GET /api/quarantine; `callwatch replay --quarantined` retries them).",
            quarantined,
        ),
        gauge(
            "callwatch_inbox_waiting_for_call",
            "Webhook events that name another source's call (fixa's analyses) not known yet: "
            "kept, and applied when that call arrives.",
            waiting or 0,
        ),
        by(
            "callwatch_calls_unfinished",
            "Calls whose record is not assembled, by assembly state (failed: gave up).",
            "assembly_state",
            calls,
            UNFINISHED,
        ),
        by(
            "callwatch_deliveries_outstanding",
            "Deliveries waiting for an attempt or a retry (pending) or failed for good.",
            "state",
            outstanding,
            OUTSTANDING,
        ),
        by(
            "callwatch_recent_deliveries",
            f"Deliveries created in the last {minutes}, by state now.",
            "state",
            list(states.items()),
            DELIVERY_STATES,
        ),
        histogram(
            "callwatch_recent_delivery_latency_seconds",
            f"From event to delivered, for deliveries created in the last {minutes} "
            "(a sliding window: use the buckets without rate()).",
            DELIVERY_BUCKETS_S,
            buckets,
            total,
        ),
        by(
            "callwatch_recent_delivery_attempts",
            f"Attempts at the deliveries created in the last {minutes}, by outcome.",
            "outcome",
            attempts,
            ATTEMPT_OUTCOMES,
        ),
        gauge(
            "callwatch_window_alerts_open",
            "Window alerts firing now (open until their condition clears).",
            open_alerts or 0,
        ),
    ]


def redis(client: Redis) -> list[Metric]:
    pipe = client.pipeline(transaction=False)
    pipe.llen(QUEUE)
    pipe.hlen(UNACKED)
    pipe.xlen(CALLS_STREAM)
    pipe.xlen(ALERTS_STREAM)
    pipe.hgetall(COUNTERS)
    pipe.hgetall(HEARTBEATS)
    queued, unacked, calls, alerts, raw, beats = pipe.execute()
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
    queue = GaugeMetricFamily(
        "callwatch_queue_messages", "Task messages waiting in the Celery queue.", labels=["queue"]
    )
    queue.add_metric([QUEUE], queued)
    streams = GaugeMetricFamily(
        "callwatch_stream_entries",
        "Entries in each ops stream (trimmed to about CALLWATCH_STREAM_MAXLEN).",
        labels=["stream"],
    )
    streams.add_metric([CALLS_STREAM], calls)
    streams.add_metric([ALERTS_STREAM], alerts)
    assembled_total = CounterMetricFamily(
        "callwatch_calls_assembled",
        "Calls assembled, by provider (counted in Redis by the workers).",
        labels=["provider"],
    )
    for provider, value in assembled:
        assembled_total.add_metric([provider], value)
    alerts_total = CounterMetricFamily(
        "callwatch_alerts",
        "Alerts triggered and resolved (counted in Redis by the workers).",
        labels=["type"],
    )
    for kind in ALERT_TYPES:
        alerts_total.add_metric([kind], counters.get(f"alerts|{kind}", 0))
    rate_limited = CounterMetricFamily(
        "callwatch_deliveries_rate_limited",
        "Deliveries put off by their subscription's rate limit (one each time it was; counted "
        "in Redis by the workers).",
        value=counters.get(RATE_LIMITED, 0),
    )
    purged = CounterMetricFamily(
        "callwatch_purged",
        "What the retention purge deleted, by kind: calls (with their events, deliveries, "
        "alerts and recordings, counted apart), raw bodies emptied (counted in Redis).",
        labels=["kind"],
    )
    for kind in PURGED_KINDS:
        purged.add_metric([kind], counters.get(retention_counters.PURGED + kind, 0))
    archives = CounterMetricFamily(
        "callwatch_recording_archives",
        "Recording archive runs by outcome: archived, retried (a timeout, 429 or 5xx), failed "
        "(for good: too large, not audio, refused, or out of retries).",
        labels=["outcome"],
    )
    for outcome in copying.OUTCOMES:
        archives.add_metric([outcome], counters.get(copying.OUTCOME + outcome, 0))
    archived_bytes = CounterMetricFamily(
        "callwatch_recording_archived_bytes",
        "Bytes of recordings put in the recording store (dual-channel files included).",
        value=counters.get(copying.ARCHIVED_BYTES, 0),
    )
    erased = CounterMetricFamily(
        "callwatch_erased_calls",
        "Calls deleted on request: DELETE /api/calls/{id} and erasures by number.",
        value=counters.get(retention_counters.ERASED_CALLS, 0),
    )
    heartbeat = GaugeMetricFamily(
        "callwatch_worker_heartbeat_timestamp_seconds",
        "When each periodic worker task (run by celery beat) last finished, in Unix time.",
        labels=["task"],
    )
    for task, at in sorted(beats.items()):
        heartbeat.add_metric([task.decode()], float(at))
    return [
        queue,
        gauge(
            "callwatch_queue_unacked",
            "Task messages taken by a worker and not yet acknowledged (includes countdowns).",
            unacked,
        ),
        streams,
        assembled_total,
        histogram(
            "callwatch_assembly_latency_seconds",
            "From the end of a call (platform clock) to its assembled record.",
            ASSEMBLY_BUCKETS_S,
            buckets,
            counters.get("assembly_s|sum", 0.0),
        ),
        alerts_total,
        rate_limited,
        archives,
        archived_bytes,
        purged,
        erased,
        heartbeat,
    ]
