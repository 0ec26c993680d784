"""Task messages on the real Redis, and intake's enqueue thread."""

import base64
import json
import logging
import threading
from collections.abc import Iterator

import pytest
import redis

from callwatch.queue import INGEST, QUEUE, Background, Producer
from callwatch.settings import Settings


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    producer = Producer(settings.broker_url)
    yield producer
    producer.close()


def queued(settings: Settings) -> list[tuple[str, list[str]]]:
    """The (task, ids) of the messages on the queue, oldest first."""
    client = redis.Redis.from_url(settings.broker_url)
    messages = [json.loads(raw) for raw in reversed(client.lrange(QUEUE, 0, -1))]
    client.close()
    return [
        (message["headers"]["task"], json.loads(base64.b64decode(message["body"]))[0][0])
        for message in messages
    ]


def test_background_sends_in_order_and_close_sends_what_waits(
    settings: Settings, producer: Producer
) -> None:
    enqueue = Background(producer.ingest)
    enqueue(["evt_1", "evt_2"])
    enqueue(["evt_3"])
    enqueue.close()

    assert queued(settings) == [(INGEST, ["evt_1", "evt_2"]), (INGEST, ["evt_3"])]


def test_the_caller_does_not_wait_for_a_slow_send(settings: Settings, producer: Producer) -> None:
    release = threading.Event()

    def slow(ids: list[str]) -> None:
        release.wait(10)
        producer.ingest(ids)

    enqueue = Background(slow)
    enqueue(["evt_1"])
    enqueue(["evt_2"])  # returns while the first send still waits
    assert queued(settings) == []
    release.set()
    enqueue.close()

    assert queued(settings) == [(INGEST, ["evt_1"]), (INGEST, ["evt_2"])]


class Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_failed_send_is_logged_and_the_next_ones_still_go(
    settings: Settings, producer: Producer
) -> None:
    def flaky(ids: list[str]) -> None:
        if ids == ["evt_lost"]:
            raise redis.ConnectionError("redis is down")
        producer.ingest(ids)

    # Whether callwatch's loggers propagate depends on logs.py having run: listen on this one.
    logged = Messages()
    logging.getLogger("callwatch.queue").addHandler(logged)
    try:
        enqueue = Background(flaky)
        enqueue(["evt_lost"])
        enqueue(["evt_2"])
        enqueue.close()
    finally:
        logging.getLogger("callwatch.queue").removeHandler(logged)

    assert logged.messages == ["enqueue failed; the sweeper will pick the events up"]
    assert queued(settings) == [(INGEST, ["evt_2"])]
