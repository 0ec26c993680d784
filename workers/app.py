"""The Celery application: configuration from Settings and one runtime per worker process."""

from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_shutdown

from callwatch.logs import configure_logging
from callwatch.queue import EVALUATE_WINDOWS, SWEEP
from callwatch.runtime import Runtime
from callwatch.settings import Settings


class CallwatchCelery(Celery):
    runtime: Runtime | None = None
    settings: Settings


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
    if app.runtime is None:
        app.runtime = Runtime.start(app.settings)


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    if app.runtime is not None:
        app.runtime.close()
        app.runtime = None
