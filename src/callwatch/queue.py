"""Producing Celery task messages from the web process, without importing the worker app."""

from celery import Celery

INGEST = "callwatch.ingest"
ASSEMBLE = "callwatch.assemble"
SWEEP = "callwatch.sweep"


class Producer:
    """A producer-only Celery instance; one per process, created in its lifecycle hook."""

    def __init__(self, broker_url: str, visibility_timeout_s: int) -> None:
        self._celery = Celery("callwatch-producer", broker=broker_url, set_as_current=False)
        self._celery.conf.broker_transport_options = {"visibility_timeout": visibility_timeout_s}
        self._celery.conf.broker_connection_retry_on_startup = True

    def ingest(self, inbox_ids: list[str]) -> None:
        self._celery.send_task(INGEST, args=[inbox_ids], retry=False)

    def assemble(self, call_id: str) -> None:
        self._celery.send_task(ASSEMBLE, args=[call_id], retry=False)

    def close(self) -> None:
        self._celery.close()
