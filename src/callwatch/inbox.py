"""The durable inbox: received events stored with their dedupe key, in group commits."""

import asyncio
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from callwatch.db import insert_ignore, make_engine, make_sessionmaker, transaction
from callwatch.tables import InboxEvent

log = logging.getLogger("callwatch.inbox")


def store(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert rows, skipping (source, dedupe key) pairs already stored; returns the new ids."""
    if not rows:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        batch = json.dumps(rows, default=datetime.isoformat)
        return set(session.scalars(_PG_INSERT, {"rows": batch}))
    statement = insert_ignore(session, InboxEvent.__table__)  # type: ignore[arg-type]
    return set(session.scalars(statement.returning(InboxEvent.id), list(rows)))


# On Postgres a batch goes in as one JSON document: one short statement that psycopg prepares once
# and one parameter, where a multi-row VALUES list is new SQL text for every batch size and costs
# several times the CPU per row.
_PG_COLUMNS = [
    ("id", "text"),
    ("org_id", "text"),
    ("source_id", "text"),
    ("dedupe_key", "text"),
    ("provider_call_id", "text"),
    ("event", "jsonb"),
    ("raw_body", "text"),
    ("content_type", "text"),
    ("received_at", "timestamptz"),
    ("due_at", "timestamptz"),
    ("processed_at", "timestamptz"),
    ("call_id", "text"),
    ("attempts", "int"),
    ("last_error", "text"),
]
_PG_INSERT = text(
    f"INSERT INTO inbox ({', '.join(name for name, _ in _PG_COLUMNS)}) "
    "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
    f"AS r({', '.join(f'{name} {kind}' for name, kind in _PG_COLUMNS)}) "
    "ON CONFLICT DO NOTHING RETURNING id"
)


_Pending = tuple[list[dict[str, Any]], asyncio.Future[list[bool]], asyncio.AbstractEventLoop]


class GroupWriter:
    """Stores the rows of concurrent requests in one transaction and queues them in one message.

    A request's future resolves only after the commit, so a 2xx still means durable. The
    stored ids wait up to `linger_s` to share a queue message: a worker's cost is mostly per
    message (delivery, ack, a transaction), so a trickle of events should not mean a message each.
    """

    def __init__(
        self,
        engine: Engine,
        enqueue: Callable[[list[str]], None],
        *,
        max_rows: int = 500,
        linger_s: float = 0.02,
    ) -> None:
        self._engine = engine
        self._sessions = make_sessionmaker(engine)
        self._enqueue = enqueue
        self._max_rows = max_rows
        self._linger_s = linger_s
        self._unsent: list[str] = []
        self._send_by: float | None = None
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)

    @classmethod
    def open(cls, database_url: str, enqueue: Callable[[list[str]], None]) -> "GroupWriter":
        """Intake's writer, on a connection of its own.

        No ping per checkout: at thousands of batches a second it would add a round trip to
        each, and a dead connection fails just one batch (503, the platform retries) before the
        pool replaces it. (Several writer threads measured no faster: they contend for the GIL.)
        """
        return cls(make_engine(database_url, pool_pre_ping=False, pool_size=1), enqueue)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._engine.dispose()

    async def submit(self, rows: list[dict[str, Any]]) -> list[bool]:
        """For each row, True if it is new and False if it was a duplicate."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bool]] = loop.create_future()
        self._queue.put((rows, future, loop))
        return await future

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._until_send())
            except queue.Empty:
                self._send()
                continue
            if first is None:
                self._send()
                return
            batch = [first]
            size = len(first[0])
            while size < self._max_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
                size += len(item[0])
            self._write(batch)
            if len(self._unsent) >= self._max_rows or self._until_send() == 0:
                self._send()

    def _until_send(self) -> float | None:
        if self._send_by is None:
            return None
        return max(0.0, self._send_by - time.monotonic())

    def _write(self, batch: list[_Pending]) -> None:
        rows = [row for pending in batch for row in pending[0]]
        try:
            with transaction(self._sessions) as session:
                inserted = store(session, rows)
        except Exception as exc:  # every waiting request must hear about the failure
            for _, future, loop in batch:
                loop.call_soon_threadsafe(_settle, future, None, exc)
            return
        for pending_rows, future, loop in batch:
            flags = [row["id"] in inserted for row in pending_rows]
            loop.call_soon_threadsafe(_settle, future, flags, None)
        new_ids = [row["id"] for row in rows if row["id"] in inserted]
        if new_ids and self._send_by is None:
            self._send_by = time.monotonic() + self._linger_s
        self._unsent.extend(new_ids)

    def _send(self) -> None:
        ids, self._unsent, self._send_by = self._unsent, [], None
        if not ids:
            return
        try:
            self._enqueue(ids)
        except Exception:
            # Stored already: the sweeper re-enqueues rows that stay unprocessed.
            log.warning("enqueue failed; the sweeper will pick the events up", exc_info=True)


def _settle(
    future: asyncio.Future[list[bool]], value: list[bool] | None, error: BaseException | None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value or [])
