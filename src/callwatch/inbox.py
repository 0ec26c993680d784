"""The durable inbox: received events stored with their dedupe key, in group commits."""

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from callwatch.db import insert_ignore, transaction
from callwatch.tables import InboxEvent

log = logging.getLogger("callwatch.inbox")


def store(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert rows, skipping (source, dedupe key) pairs already stored; returns the new ids."""
    if not rows:
        return set()
    statement = insert_ignore(session, InboxEvent.__table__, rows)  # type: ignore[arg-type]
    return set(session.scalars(statement.returning(InboxEvent.id)))


_Pending = tuple[list[dict[str, Any]], asyncio.Future[list[bool]], asyncio.AbstractEventLoop]


class GroupWriter:
    """Stores the rows of concurrent requests in one transaction and queues them in one message.

    A request's future resolves only after the commit, so a 2xx still means durable.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        enqueue: Callable[[list[str]], None],
        *,
        max_rows: int = 500,
    ) -> None:
        self._sessions = sessions
        self._enqueue = enqueue
        self._max_rows = max_rows
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    async def submit(self, rows: list[dict[str, Any]]) -> list[bool]:
        """For each row, True if it is new and False if it was a duplicate."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bool]] = loop.create_future()
        self._queue.put((rows, future, loop))
        return await future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
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
        if new_ids:
            try:
                self._enqueue(new_ids)
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
