"""Thin tasks: take ids, call into callwatch.pipeline, schedule the next step."""

from typing import Any

from celery import Task

from callwatch import pipeline, sweeper
from callwatch.db import transaction
from callwatch.errors import StoreUnavailable
from callwatch.queue import ASSEMBLE, INGEST, SWEEP
from workers.app import app, runtime

DB_RETRY_S = 5


@app.task(name=INGEST, bind=True, max_retries=12)
def ingest(self: Task[Any, Any], inbox_ids: list[str]) -> None:
    try:
        ready = pipeline.ingest(runtime(), inbox_ids)
    except StoreUnavailable as exc:
        raise self.retry(exc=exc, countdown=DB_RETRY_S) from exc
    # The first assembly step runs here rather than in a task of its own: one message per batch
    # of events instead of one more per call (the consumer loop, not the work, is the limit).
    for call_id in ready:
        try:
            countdown = pipeline.assemble(runtime(), call_id)
        except StoreUnavailable:
            countdown = DB_RETRY_S
        if countdown is not None:
            assemble.apply_async((call_id,), countdown=countdown)


@app.task(name=ASSEMBLE, bind=True, max_retries=12)
def assemble(self: Task[Any, Any], call_id: str) -> None:
    try:
        countdown = pipeline.assemble(runtime(), call_id)
    except StoreUnavailable as exc:
        raise self.retry(exc=exc, countdown=DB_RETRY_S) from exc
    if countdown is not None:
        assemble.apply_async((call_id,), countdown=countdown)


@app.task(name=SWEEP)
def sweep() -> None:
    rt = runtime()
    with transaction(rt.sessions) as session:
        overdue = sweeper.sweep(session, rt.clock(), rt.settings.sweep_grace_s)
    for start in range(0, len(overdue.inbox_ids), 100):
        ingest.delay(overdue.inbox_ids[start : start + 100])
    for call_id in overdue.call_ids:
        assemble.delay(call_id)
