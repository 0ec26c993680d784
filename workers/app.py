"""The Celery application: configuration from Settings and one runtime per worker process."""

from contextlib import ExitStack
from typing import Any

from celery import Celery, Task
from celery.signals import (
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    worker_init,
    worker_shutdown,
)
from opentelemetry.trace import Span, SpanKind

from callwatch import tracing
from callwatch.logs import configure_logging
from callwatch.queue import EVALUATE_WINDOWS, PURGE, SWEEP, Producer
from callwatch.runtime import Runtime
from callwatch.settings import Settings


class CallwatchCelery(Celery):
    runtime: Runtime | None = None
    settings: Settings
    # Messages a task sends per call (archives): queue.Producer's one LPUSH, not Celery's
    # publish (~600 µs a message, bench/README.md); made on first use, per broker.
    producers: dict[str, Producer] = {}

    def producer(self) -> Producer:
        url = self.settings.broker_url
        if url not in self.producers:
            self.producers[url] = Producer(url)
        return self.producers[url]


def configure(celery: CallwatchCelery, settings: Settings) -> None:
    celery.settings = settings
    celery.conf.update(
        broker_url=settings.broker_url if settings.redis_url else "redis://127.0.0.1:6379/0",
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=4,
        worker_hijack_root_logger=False,
        # Off by default: every task then costs an event message more on the broker.
        worker_send_task_events=settings.celery_events,
        task_send_sent_event=settings.celery_events,
        beat_schedule={
            "sweep": {"task": SWEEP, "schedule": settings.sweep_interval_s},
            "alert-windows": {
                "task": EVALUATE_WINDOWS,
                "schedule": settings.window_eval_interval_s,
            },
            "purge": {"task": PURGE, "schedule": settings.purge_interval_s},
        },
    )


def runtime() -> Runtime:
    if app.runtime is None:
        raise RuntimeError("worker runtime not started")
    return app.runtime


app = CallwatchCelery("callwatch", include=["workers.tasks"])
configure(app, Settings())


@worker_init.connect
def _start(**_: Any) -> None:
    configure_logging(app.settings.log_level)
    tracing.configure("callwatch-worker")
    if app.runtime is None:
        app.runtime = Runtime.start(app.settings)


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    if app.runtime is not None:
        app.runtime.close()
        app.runtime = None
    tracing.flush()


# Traces through the queue, as OpenTelemetry's Celery instrumentation carries them: the sender's
# `traceparent` in the message headers (which Celery gives the worker as the task request's
# attributes), and a consumer span around each task run.
_running: dict[str, tuple[ExitStack, Span]] = {}


@before_task_publish.connect
def _carry_trace(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        tracing.inject(headers)


@task_prerun.connect
def _start_span(task_id: str, task: Task[Any, Any], **_: Any) -> None:
    if not tracing.on():
        return
    attributes = {
        "messaging.system": "celery",
        "messaging.message.id": task_id,
        "celery.task_name": task.name,
        "celery.retries": task.request.retries or 0,
    }
    stack = ExitStack()
    span = stack.enter_context(
        tracing.continued(task.request, f"run {task.name}", SpanKind.CONSUMER, attributes)
    )
    _running[task_id] = stack, span


@task_failure.connect
def _mark_span_failed(task_id: str, exception: BaseException, **_: Any) -> None:
    running = _running.get(task_id)
    if running is not None:
        tracing.failed(running[1], exception)


@task_postrun.connect
def _end_span(task_id: str, **_: Any) -> None:
    running = _running.pop(task_id, None)
    if running is not None:
        running[0].close()
