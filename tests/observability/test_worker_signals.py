"""What the workers tell the outside: heartbeats of their periodic tasks, and Celery's task
events for Flower when they are switched on. A real worker on the real Redis."""

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from callwatch.downstream.streams import HEARTBEATS
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from tests.conftest import make_settings
from tests.factories import eventually
from workers import tasks
from workers.app import app, configure


def test_the_sweeper_notes_its_heartbeat_for_metrics(
    worker: None, settings: Settings, client: TestClient
) -> None:
    before = datetime.now(UTC).timestamp()
    broker = redis.Redis.from_url(settings.broker_url)

    tasks.sweep.delay()
    tasks.evaluate_windows.delay()

    eventually(lambda: broker.hlen(HEARTBEATS) == 2)
    beats = {task.decode(): float(at) for task, at in broker.hgetall(HEARTBEATS).items()}
    assert beats.keys() == {"sweep", "evaluate_windows"}
    assert all(before <= at <= datetime.now(UTC).timestamp() for at in beats.values())
    scraped = {
        sample.labels["task"]: sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        if family.name == "callwatch_worker_heartbeat_timestamp_seconds"
        for sample in family.samples
    }
    assert scraped == beats


@pytest.mark.parametrize("events", [True, False])
def test_task_events_are_sent_only_when_switched_on(
    settings: Settings, tmp_path: Any, events: bool
) -> None:
    chosen = make_settings(
        settings.database_url, settings.broker_url, tmp_path, celery_events=events
    )
    configure(app, chosen)
    runtime = Runtime.start(chosen)
    app.runtime = runtime
    seen: list[str] = []
    try:
        with app.connection_for_read() as connection:
            receiver = app.events.Receiver(
                connection, handlers={"*": lambda event: seen.append(event["type"])}
            )
            consumer = threading.Thread(
                target=lambda: receiver.capture(limit=None, timeout=None, wakeup=False),
                daemon=True,
            )
            consumer.start()
            try:
                with start_worker(
                    app,
                    pool="threads",
                    concurrency=1,
                    perform_ping_check=False,
                    without_heartbeat=False,
                ):
                    # The worker's own heartbeats go out either way: once one is seen, so
                    # would be the task's events.
                    eventually(lambda: "worker-heartbeat" in seen)
                    tasks.sweep.delay()
                    broker = redis.Redis.from_url(chosen.broker_url)
                    eventually(lambda: broker.hexists(HEARTBEATS, "sweep"))
                    if events:
                        eventually(lambda: "task-succeeded" in seen)
                    else:
                        time.sleep(0.5)
            finally:
                receiver.should_stop = True
                consumer.join(timeout=5)
        assert ("task-succeeded" in seen, "task-sent" in seen) == (events, events)
    finally:
        app.runtime = None
        runtime.close()
        configure(app, settings)
