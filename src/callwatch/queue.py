"""Producing Celery task messages with one Redis LPUSH, without Celery's publish machinery.

`send_task` costs ~600 µs of CPU per message; the web process and the command line only ever
send three task names (ingest, assemble, deliver) to the default queue, so `Producer` writes the
Celery protocol 2 message that kombu's Redis transport would write (the same JSON envelope,
LPUSHed onto the queue's list) for a few µs. It is the one sender outside the workers; its
messages are compared with Celery's own (`app.amqp.as_task_v2`, published by kombu) in
tests/test_queue.py.
"""

import base64
import contextvars
import json
import logging
import os
import queue
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import redis

from callwatch import tracing

log = logging.getLogger("callwatch.queue")

INGEST = "callwatch.ingest"
ASSEMBLE = "callwatch.assemble"
SWEEP = "callwatch.sweep"
DELIVER = "callwatch.deliver"
EVALUATE_WINDOWS = "callwatch.evaluate_windows"
ARCHIVE_RECORDING = "callwatch.archive_recording"
PURGE = "callwatch.purge"
QUEUE = "celery"  # Celery's default queue; kombu's Redis transport keeps it as a list of that name

_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"
_NO_CALLBACKS = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
PUSH_AT_MOST = 500  # messages per LPUSH, so that one command stays small


def _task_message(name: str, args: list[Any]) -> bytes:
    """The serialised kombu envelope of a Celery protocol 2 task message; with the current
    span's `traceparent` in its headers when tracing (as Celery's publish signal adds it)."""
    task_id = str(uuid.uuid4())
    body = json.dumps([args, {}, _NO_CALLBACKS], separators=(",", ":")).encode()
    headers: dict[str, Any] = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        # Whole: Celery cuts it at 1,024 characters with saferepr, ~140 µs a batch of 500 ids.
        "argsrepr": repr(args),
        "kwargsrepr": "{}",
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    tracing.inject(headers)
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


class Producer:
    """Sends tasks to the worker; one per process, created in its lifecycle hook."""

    def __init__(self, broker_url: str) -> None:
        self._redis = redis.Redis.from_url(broker_url, socket_timeout=5)

    def ingest(self, inbox_ids: list[str]) -> None:
        """One ingest task for all of these events."""
        self._redis.lpush(QUEUE, _task_message(INGEST, [inbox_ids]))

    def assemble(self, call_ids: list[str]) -> None:
        """One assembly task per call."""
        self._one_task_each(ASSEMBLE, call_ids)

    def deliver(self, delivery_ids: list[str]) -> None:
        """One delivery task per delivery."""
        self._one_task_each(DELIVER, delivery_ids)

    def archive(self, call_ids: list[str]) -> None:
        """One recording archive task per call."""
        self._one_task_each(ARCHIVE_RECORDING, call_ids)

    def _one_task_each(self, name: str, ids: list[str]) -> None:
        """In the order given, `PUSH_AT_MOST` messages per LPUSH."""
        for start in range(0, len(ids), PUSH_AT_MOST):
            chunk = ids[start : start + PUSH_AT_MOST]
            self._redis.lpush(QUEUE, *(_task_message(name, [each]) for each in chunk))

    def ping(self) -> None:
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()


class Background:
    """Sends ids through `send` on a thread of its own, so that the caller never waits on Redis.

    An LPUSH took ~1 ms (up to ~6 ms on a loaded machine); on the web process's event loop every
    request, and every batch's commit, would wait with it.
    """

    def __init__(self, send: Callable[[list[str]], None]) -> None:
        self._send = send
        # Each batch with the context it was handed over in (the span its message continues).
        self._waiting: queue.SimpleQueue[tuple[list[str], contextvars.Context | None] | None]
        self._waiting = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="callwatch-enqueue", daemon=True)
        self._thread.start()

    def __call__(self, ids: list[str]) -> None:
        self._waiting.put((ids, contextvars.copy_context() if tracing.on() else None))

    def close(self) -> None:
        """Send what is waiting, then stop."""
        self._waiting.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (waiting := self._waiting.get()) is not None:
            ids, context = waiting
            try:
                if context is None:
                    self._send(ids)
                else:
                    context.run(self._send, ids)
            except Exception:
                # Stored already: the sweeper re-enqueues rows that stay unprocessed.
                log.warning("enqueue failed; the sweeper will pick the events up", exc_info=True)
