"""Thin tasks: take ids, call into callwatch, schedule what follows."""

from typing import Any

from celery import Task

from callwatch.alerts import firing
from callwatch.db import transaction
from callwatch.downstream import attempts, deliveries, streams
from callwatch.downstream.effects import Effects
from callwatch.errors import StoreUnavailable
from callwatch.pipeline import steps as pipeline
from callwatch.pipeline import sweeper
from callwatch.queue import (
    ARCHIVE_RECORDING,
    ASSEMBLE,
    DELIVER,
    EVALUATE_WINDOWS,
    INGEST,
    PURGE,
    SWEEP,
)
from callwatch.recordings import copying
from callwatch.retention import purge as retention
from workers.app import app, runtime

DB_RETRY_S = 5


def dispatch(effects: Effects) -> None:
    """After the commit: send the deliveries it created, add its stream entries, archive the
    recordings that became available."""
    for delivery_id in effects.deliveries:
        deliver.delay(delivery_id)
    if effects.archives:
        app.producer().archive(effects.archives)
    rt = runtime()
    if effects.entries and rt.redis is not None:
        streams.publish(rt.redis, effects.entries, rt.settings.stream_maxlen)


@app.task(name=INGEST, bind=True, max_retries=12)
def ingest(self: Task[Any, Any], inbox_ids: list[str]) -> None:
    try:
        ingested = pipeline.ingest(runtime(), inbox_ids)
    except StoreUnavailable as exc:
        raise self.retry(exc=exc, countdown=DB_RETRY_S) from exc
    dispatch(ingested.effects)
    # The first assembly runs, claimed with the events, run here rather than in tasks of their
    # own: one message per batch of events instead of one more per call (the consumer loop, not
    # the work, is the limit).
    try:
        steps = pipeline.run(runtime(), ingested.ready)
    except StoreUnavailable:
        for claimed in ingested.ready:
            assemble.apply_async((claimed.call_id,), countdown=DB_RETRY_S)
        return
    follow(steps)


@app.task(name=ASSEMBLE, bind=True, max_retries=12)
def assemble(self: Task[Any, Any], call_id: str) -> None:
    try:
        steps = pipeline.assemble(runtime(), call_id)
    except StoreUnavailable as exc:
        raise self.retry(exc=exc, countdown=DB_RETRY_S) from exc
    follow(steps)


def follow(steps: pipeline.Steps) -> None:
    dispatch(steps.effects)
    for call_id, countdown in steps.countdowns.items():
        assemble.apply_async((call_id,), countdown=countdown)


@app.task(name=DELIVER, bind=True, max_retries=12)
def deliver(self: Task[Any, Any], delivery_id: str) -> None:
    """A batch: the due deliveries of this one's subscription."""
    try:
        countdowns = attempts.deliver(runtime(), delivery_id)
    except StoreUnavailable as exc:
        raise self.retry(exc=exc, countdown=DB_RETRY_S) from exc
    for each, countdown in countdowns.items():
        deliver.apply_async((each,), countdown=countdown)


@app.task(name=ARCHIVE_RECORDING, bind=True, max_retries=12)
def archive_recording(self: Task[Any, Any], call_id: str) -> None:
    try:
        countdown = copying.run(runtime(), call_id)
    except StoreUnavailable as exc:
        raise self.retry(exc=exc, countdown=DB_RETRY_S) from exc
    if countdown is not None:
        archive_recording.apply_async((call_id,), countdown=countdown)


def heartbeat(task: str) -> None:
    """A periodic task finished: `/metrics` shows when (alerts fire when it stops)."""
    rt = runtime()
    if rt.redis is not None:
        streams.heartbeat(rt.redis, task, rt.clock())


@app.task(name=EVALUATE_WINDOWS)
def evaluate_windows() -> None:
    rt = runtime()
    with transaction(rt.sessions) as session:
        effects = firing.evaluate_windows(session, rt.clock())
    dispatch(effects)
    heartbeat("evaluate_windows")


@app.task(name=SWEEP)
def sweep() -> None:
    rt = runtime()
    with transaction(rt.sessions) as session:
        overdue = sweeper.sweep(session, rt.clock(), rt.settings.sweep_grace_s)
        lost_deliveries = deliveries.overdue(session, rt.clock())
    for start in range(0, len(overdue.inbox_ids), 100):
        ingest.delay(overdue.inbox_ids[start : start + 100])
    for call_id in overdue.call_ids:
        assemble.delay(call_id)
    for delivery_id in lost_deliveries:
        deliver.delay(delivery_id)
    if overdue.archive_ids:
        app.producer().archive(overdue.archive_ids)
    heartbeat("sweep")


@app.task(name=PURGE)
def purge() -> None:
    """One run at a time: a run still going when beat sends the next makes that one a no-op."""
    rt = runtime()
    if retention.run_alone(rt):
        heartbeat("purge")
