"""Task messages on the real Redis: the Producer's against Celery's own, run by a real worker;
and intake's enqueue thread."""

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Task
from celery.app.task import extract_exec_options
from celery.signals import task_postrun
from celery.utils.saferepr import saferepr
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext

import workers.tasks  # noqa: F401  (registers the tasks, whose options Celery's messages take)
from callwatch import tracing
from callwatch.ids import new_id
from callwatch.intake.receiver import MAX_UNSENT
from callwatch.queue import (
    ARCHIVE_RECORDING,
    ASSEMBLE,
    DELIVER,
    INGEST,
    QUEUE,
    Background,
    Producer,
)
from callwatch.settings import Settings
from tests.factories import eventually
from workers.app import app as celery
from workers.app import configure

# Every task the web process and the command line send, by the Producer method that sends it:
# intake and `replay --quarantined` ingest, `replay` assembles, the subscriptions API's re-sends
# deliver; and the workers' archive messages, one per call.
SENDERS: dict[str, Callable[[Producer, list[str]], None]] = {
    INGEST: Producer.ingest,
    ASSEMBLE: Producer.assemble,
    DELIVER: Producer.deliver,
    ARCHIVE_RECORDING: Producer.archive,
}
PREFIXES = {INGEST: "evt", ASSEMBLE: "call", DELIVER: "dlv", ARCHIVE_RECORDING: "call"}


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


def drained(settings: Settings) -> list[bytes]:
    """The messages on the queue, oldest first, taken off it."""
    client = redis.Redis.from_url(settings.broker_url)
    messages: list[bytes] = []
    while (raw := client.rpop(QUEUE)) is not None:
        messages.append(raw)
    client.close()
    return messages


def args_of_each_message(name: str, ids: list[str]) -> list[list[Any]]:
    """An ingest task takes the whole batch; assembly and delivery take one id each."""
    return [[ids]] if name == INGEST else [[each] for each in ids]


def celery_writes(settings: Settings, name: str, args: list[Any], task_id: str) -> bytes:
    """What Celery itself queues for task `name` with `args`, read back off `QUEUE`.

    As `task.apply_async` does it: `as_task_v2`'s message with the task's own options, routed and
    published by Celery's sender through kombu's Redis transport. But for `reply_to`: send_task
    names the sending thread's result queue there, which nothing uses while results are ignored;
    as_task_v2, given none, leaves it empty, as the Producer does.
    """
    configure(celery, settings)
    task = celery.tasks[name]
    options = {key: value for key, value in extract_exec_options(task).items() if value is not None}
    message = celery.amqp.as_task_v2(
        task_id,
        name,
        args,
        {},
        ignore_result=task.ignore_result,
        time_limit=options.pop("time_limit", None),
        soft_time_limit=options.pop("soft_time_limit", None),
        expires=options.pop("expires", None),
    )
    routing = celery.amqp.router.route(options, name, args, {}, task)
    with celery.connection_for_write(settings.broker_url) as connection:
        publisher = celery.amqp.Producer(connection, auto_declare=False)
        celery.amqp.send_task_message(publisher, name, message, **routing)
    queued = drained(settings)
    assert len(queued) == 1, f"Celery queued it elsewhere than {QUEUE!r}, where the Producer does"
    return queued[0]


def comparable(raw: bytes) -> dict[str, Any]:
    """A queued message as its JSON value, less what differs between two senders by design.

    The task id is not among it: Celery is given the id the Producer chose, so `id`, `root_id`
    and `correlation_id` are compared.
    """
    message: dict[str, Any] = json.loads(raw)
    # The body as the value it encodes (`body_encoding` and the content type are compared):
    # kombu's JSON has a space after each `,` and `:`, the Producer's has none.
    message["body"] = json.loads(base64.b64decode(message["body"]))
    # kombu's Redis transport tags each message it publishes with a fresh uuid4.
    del message["properties"]["delivery_tag"]
    # Names the sending process: Celery writes `gen<pid>@<host>`, the Producer `<pid>@<host>`.
    del message["headers"]["origin"]
    return message


def id_of(raw: bytes) -> str:
    task_id: str = json.loads(raw)["headers"]["id"]
    return task_id


@pytest.mark.parametrize("name", list(SENDERS))
def test_the_producer_queues_what_celery_queues(
    settings: Settings, producer: Producer, name: str
) -> None:
    ids = [new_id(PREFIXES[name]) for _ in range(2)]
    SENDERS[name](producer, ids)
    ours = drained(settings)

    each_args = args_of_each_message(name, ids)
    assert len(ours) == len(each_args)
    theirs = [
        celery_writes(settings, name, args, id_of(raw))
        for raw, args in zip(ours, each_args, strict=True)
    ]
    assert [comparable(raw) for raw in ours] == [comparable(raw) for raw in theirs]


def test_a_long_batch_differs_only_in_how_much_of_its_args_it_shows(
    settings: Settings, producer: Producer
) -> None:
    """Celery cuts `argsrepr` at 1,024 characters (saferepr); the Producer keeps the whole repr.

    It is only shown (the worker's log, Celery's events; the worker reads the body), and
    saferepr costs ~140 µs a batch of 500 ids on the thread that sends intake's batches.
    """
    ids = [new_id("evt") for _ in range(MAX_UNSENT)]
    producer.ingest(ids)
    [raw] = drained(settings)

    ours, theirs = comparable(raw), comparable(celery_writes(settings, INGEST, [ids], id_of(raw)))
    shown = ours["headers"].pop("argsrepr"), theirs["headers"].pop("argsrepr")
    assert ours == theirs
    assert shown == (repr([ids]), saferepr([ids], celery.amqp.argsrepr_maxsize))


def traceparent_of(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


@pytest.mark.parametrize("name", list(SENDERS))
def test_under_a_span_both_carry_its_traceparent_in_the_headers(
    settings: Settings, producer: Producer, spans: InMemorySpanExporter, name: str
) -> None:
    """Celery's side adds it in its publish signal (workers/app.py), where OpenTelemetry's Celery
    instrumentation does; the worker reads it back from the task request."""
    ids = [new_id(PREFIXES[name])]
    with tracing.span("sending") as span:
        SENDERS[name](producer, ids)
        [ours] = drained(settings)
        theirs = celery_writes(settings, name, args_of_each_message(name, ids)[0], id_of(ours))

    assert comparable(ours) == comparable(theirs)
    assert comparable(ours)["headers"]["traceparent"] == traceparent_of(span.get_span_context())


def test_without_tracing_no_traceparent_is_sent(settings: Settings, producer: Producer) -> None:
    with tracing.span("sending"):
        producer.ingest(["evt_1"])

    assert "traceparent" not in comparable(drained(settings)[0])["headers"]


def test_background_sends_in_the_context_it_was_handed_the_ids(
    settings: Settings, producer: Producer, spans: InMemorySpanExporter
) -> None:
    enqueue = Background(producer.ingest)
    with tracing.span("handing over") as span:
        enqueue(["evt_1"])
    enqueue(["evt_2"])
    enqueue.close()

    headers = [comparable(raw)["headers"] for raw in drained(settings)]
    assert [each.get("traceparent") for each in headers] == [
        traceparent_of(span.get_span_context()),
        None,
    ]


@pytest.fixture
def runs() -> Iterator[list[tuple[str, list[Any], str]]]:
    """The (task, args, state) of each task run by the worker, as it finishes."""
    ran: list[tuple[str, list[Any], str]] = []

    def finished(task: Task[Any, Any], args: list[Any], state: str, **_: Any) -> None:
        ran.append((task.name, args, state))

    task_postrun.connect(finished, weak=False)
    yield ran
    task_postrun.disconnect(finished)


@pytest.mark.parametrize("name", list(SENDERS))
def test_a_worker_runs_what_the_producer_queued(
    settings: Settings,
    producer: Producer,
    worker: None,
    runs: list[tuple[str, list[Any], str]],
    name: str,
) -> None:
    ids = [new_id(PREFIXES[name]) for _ in range(2)]  # none stored: each run finds nothing to do
    SENDERS[name](producer, ids)

    expected = [(name, args, "SUCCESS") for args in args_of_each_message(name, ids)]
    eventually(lambda: len(runs) >= len(expected))
    assert sorted(runs, key=repr) == sorted(expected, key=repr)


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
