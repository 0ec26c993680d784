"""Webhook intake on the web process's event loop: verify, parse, store in group commits, enqueue.

Each request is verified and parsed in its own task as it arrives; the requests parsed while a
batch is being stored wait, and go together in the next one (at most `MAX_BATCH`). On Postgres a
batch goes through `InboxWriter`'s non-blocking connection, watched by the event loop, so the loop
serves other requests meanwhile; on SQLite it is stored on a worker thread. A request's future
resolves once its batch has committed, and only then does the endpoint answer 202.

Faults (issue 21). Every batch has a deadline: one not stored in time, or whose connection fails,
is failed with StoreUnavailable (503, Retry-After) and its connection closed; the next batch
reconnects. The deadline does not trust the event loop to report the socket: after a Postgres
crash uvloop called the reader once, then dropped it, and the batch waited for good. A batch whose
INSERT fails on its data (a value too long for its column, a NUL) is split in halves until the
offending request is alone; it gets 422, every other request of the batch is stored.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry.trace import SpanContext
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from callwatch import ids, providers, tracing
from callwatch.db import transaction
from callwatch.errors import StoreUnavailable, Unauthorized
from callwatch.intake import storable
from callwatch.intake.inbox import InboxRow, store
from callwatch.intake.inbox_writer import InboxWriter
from callwatch.intake.source_cache import Sources
from callwatch.intake.storable import is_data_error, rejection
from callwatch.model.events import CallEvent
from callwatch.orgs import tenancy
from callwatch.probe import Probe
from callwatch.providers.base import SourceConfig, WebhookRequest
from callwatch.validation import invalid_record

log = logging.getLogger("callwatch.webhooks")

APPLICATION_NAME = "callwatch-intake"  # the writer's connection in pg_stat_activity
# How long stored ids wait to share one queue message: at 125 calls/s, 20 ms made messages of
# ~9 ids, 50 ms of ~23, and a worker's CPU per call fell by a third (bench/README.md).
LINGER_S = 0.05
MAX_UNSENT = 500
# Requests per INSERT: uncapped, batches of 30 and more formed, with stalls near 100 ms (bench).
MAX_BATCH = 16
# Body bytes per INSERT (a larger request goes alone): the batch deadline is fixed, and 16
# bodies of 1 MiB took ~1 s to store where one took well under the deadline.
MAX_BATCH_BYTES = 1 << 20


def rows_of(source: SourceConfig, request: WebhookRequest) -> list[InboxRow]:
    """Verify a request and parse its events into inbox rows (raises a RequestError)."""
    allowed = source.settings.get("allowed_ips") or []
    if allowed and not tenancy.ip_allowed(allowed, request.client_ip):
        raise Unauthorized(f"client address {request.client_ip} is not in the allowed_ips")
    adapter = providers.get(source.provider)
    delivery_id = adapter.authenticate(request, source, request.received_at.timestamp())
    try:
        events = adapter.parse(request, delivery_id)
    except ValidationError as exc:  # the call record a provider makes of the body's values
        raise invalid_record(exc) from None
    rows = [_row(source, event, request) for event in events]
    for row in rows:
        storable.check(row)
    return rows


def _row(source: SourceConfig, event: CallEvent, request: WebhookRequest) -> InboxRow:
    return InboxRow(
        id=ids.new_id("evt"),
        org_id=source.org_id,
        source_id=source.id,
        dedupe_key=storable.fit(event.dedupe_key, storable.DEDUPE_KEY),
        provider_call_id=event.provider_call_id,
        event=event,
        raw_body=request.body.decode("utf-8", "replace"),
        content_type=request.content_type,
        received_at=request.received_at,
        due_at=request.received_at,
    )


@dataclass
class _Pending:
    source: SourceConfig
    rows: list[InboxRow]
    stored: asyncio.Future[list[str]]  # the request's new event ids, once committed
    trace: SpanContext | None = None  # the request's span, when tracing


@dataclass(eq=False)
class _Batch:
    pendings: list[_Pending]
    rows: list[InboxRow] = field(init=False)
    expiry: asyncio.TimerHandle | None = None
    socket: int | None = None  # the writer's socket, while the event loop watches it
    writing: bool = False  # watched for room too (libpq has bytes to send)

    def __post_init__(self) -> None:
        self.rows = [row for pending in self.pendings for row in pending.rows]


def _batch_size(waiting: list[_Pending]) -> int:
    """How many of the waiting requests the next batch takes (at least one)."""
    size = 0
    for taken, pending in enumerate(waiting[:MAX_BATCH]):
        size += sum(len(row.raw_body) for row in pending.rows)
        if size > MAX_BATCH_BYTES and taken > 0:
            return taken
    return min(len(waiting), MAX_BATCH)


class Intake:
    """Group commit of parsed requests, then one queue message per `LINGER_S` of stored ids.

    Stored ids wait up to `LINGER_S` to share a queue message: a worker's cost is mostly per
    message (delivery, ack, a transaction), so a trickle of events should not mean one each.
    `enqueue` must not block (`queue.Background`): the event loop would wait on Redis.
    `deadline_s` bounds each batch, from its start (connecting included) to its commit.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sources: Sources,
        enqueue: Callable[[list[str]], None],
        writer: InboxWriter | None = None,
        *,
        deadline_s: float,
    ) -> None:
        self.sources = sources
        self._sessions = sessions
        self._enqueue = enqueue
        self._writer = writer
        self._deadline_s = deadline_s
        self._waiting: list[_Pending] = []
        self._halves: list[list[_Pending]] = []  # a batch's requests after a data error, split
        self._batch: _Batch | None = None
        self._flush_soon = False
        self._thread: asyncio.Future[set[str]] | None = None  # SQLite: a batch off the loop
        self._thread_task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._connect_task: asyncio.Task[None] | None = None  # a batch waiting on _connecting
        self._unsent: list[str] = []
        self._unsent_traces: list[SpanContext] = []  # the requests of those ids, when tracing
        self._send_later: asyncio.TimerHandle | None = None
        self.problem: str | None = None  # why the last batch could not be stored, until one is
        self._write_probe = Probe(self._probe, deadline_s)  # SQLite: can a write begin?

    async def submit(self, source: SourceConfig, request: WebhookRequest) -> list[str]:
        """Verify, parse and store a request: its new event ids, empty if all were duplicates."""
        rows = rows_of(source, request)
        loop = asyncio.get_running_loop()
        pending = _Pending(source, rows, loop.create_future(), tracing.current())
        self._waiting.append(pending)
        if self._batch is None and not self._flush_soon:
            # After the other requests of this turn of the loop, so that they share the batch.
            self._flush_soon = True
            loop.call_soon(self._flush)
        return await pending.stored

    async def can_store(self) -> str:
        """ "ok", or why intake cannot store now: the last batch failed and the database is still
        unreachable (the readiness probe asks)."""
        if self.problem is None:
            return "ok"
        if self._writer is None:
            reachable = await self._write_probe() == "ok"
        else:
            try:
                await asyncio.wait_for(asyncio.shield(self._connect()), self._deadline_s)
                reachable = True
            except (StoreUnavailable, TimeoutError):
                reachable = False
        if reachable:
            self.problem = None
        return self.problem or "ok"

    def close(self) -> None:
        """Fail the requests still waiting (the server is stopping), send the ids still waiting
        for their queue message, and drop the connection."""
        stopping = StoreUnavailable("database unavailable: the server is stopping")
        waiting = [p for half in self._halves for p in half] + self._waiting
        self._halves, self._waiting = [], []  # first: failing the batch would start the next
        for pending in waiting:
            if not pending.stored.done():
                pending.stored.set_exception(stopping)
        if self._batch is not None:
            self._fail(self._batch, stopping)
        self._send()
        if self._writer is not None:
            self._writer.close()

    def _flush(self) -> None:
        self._flush_soon = False
        if self._batch is not None:
            return
        if self._halves:
            pendings = self._halves.pop(0)
        elif self._waiting:
            taken = _batch_size(self._waiting)
            pendings, self._waiting = self._waiting[:taken], self._waiting[taken:]
        else:
            return
        batch = self._batch = _Batch(pendings)
        loop = asyncio.get_running_loop()
        batch.expiry = loop.call_later(self._deadline_s, self._expired, batch)
        if self._writer is None:
            self._thread_task = loop.create_task(self._store_on_thread(batch))
        elif not self._writer.connected:
            self._connect_task = loop.create_task(self._connect_then_send(batch))
        else:
            self._send_batch(batch)

    async def _store_on_thread(self, batch: _Batch) -> None:
        # One thread at a time: a batch past its deadline may still be storing (a thread cannot
        # be stopped); the next waits for it, within its own deadline.
        while self._thread is not None:
            await asyncio.wait([self._thread])
        if batch is not self._batch:
            return
        thread = self._thread = asyncio.ensure_future(asyncio.to_thread(self._store, batch.rows))
        thread.add_done_callback(self._thread_done)  # before any waiter wakes
        try:
            stored: set[str] | Exception = await thread
        except Exception as exc:
            stored = exc
        if batch is self._batch:
            self._settle(batch, stored)
        elif isinstance(stored, set):  # answered 503 at its deadline; its rows go on anyway
            self._queue(stored, batch)

    def _thread_done(self, thread: asyncio.Future[set[str]]) -> None:
        self._thread = None

    def _store(self, rows: list[InboxRow]) -> set[str]:
        with transaction(self._sessions) as session:
            return store(session, rows)

    def _probe(self) -> None:
        with transaction(self._sessions) as session:  # SQLite: BEGIN IMMEDIATE, the write lock
            session.execute(text("SELECT 1"))

    def _connect(self) -> asyncio.Future[None]:
        """The one connection attempt under way (batches and the probe share it)."""
        assert self._writer is not None
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(asyncio.to_thread(self._writer.connect))
            self._connecting.add_done_callback(self._connected)
        return self._connecting

    def _connected(self, attempt: asyncio.Future[None]) -> None:
        self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved: the batches and probes that waited have it

    async def _connect_then_send(self, batch: _Batch) -> None:
        try:
            await asyncio.shield(self._connect())
        except Exception as exc:
            if batch is self._batch:
                self._settle(batch, exc)
            return
        if batch is self._batch:
            self._send_batch(batch)

    def _send_batch(self, batch: _Batch) -> None:
        writer = self._writer
        assert writer is not None
        try:
            writer.send(batch.rows)
        except Exception as exc:
            self._fail(batch, exc)
            return
        batch.socket = writer.fileno()
        asyncio.get_running_loop().add_reader(batch.socket, self._progress, batch)
        self._watch_writes(batch)

    def _progress(self, batch: _Batch) -> None:
        writer = self._writer
        assert writer is not None
        if batch is not self._batch:
            return
        try:
            stored = writer.poll()
        except Exception as exc:
            self._fail(batch, exc)
            return
        if stored is None:
            self._watch_writes(batch)
        else:
            self._settle(batch, stored)

    def _watch_writes(self, batch: _Batch) -> None:
        """Watch the socket for room too while libpq has bytes it could not send yet."""
        assert self._writer is not None
        assert batch.socket is not None
        if self._writer.wants_write != batch.writing:
            loop = asyncio.get_running_loop()
            if batch.writing:
                loop.remove_writer(batch.socket)
            else:
                loop.add_writer(batch.socket, self._progress, batch)
            batch.writing = not batch.writing

    def _expired(self, batch: _Batch) -> None:
        if batch is self._batch:
            self._fail(
                batch,
                StoreUnavailable(f"database unavailable: no commit within {self._deadline_s} s"),
            )

    def _fail(self, batch: _Batch, exc: Exception) -> None:
        """Fail the batch; unless its data was at fault the connection goes (the server rolls
        the batch back) and the next batch reconnects."""
        self._unwatch(batch)
        if self._writer is not None and not is_data_error(exc):
            self._writer.close()
            if not isinstance(exc, StoreUnavailable):
                log.error("intake batch failed", exc_info=exc)
                exc = StoreUnavailable(f"database unavailable: {type(exc).__name__}")
        self._settle(batch, exc)

    def _unwatch(self, batch: _Batch) -> None:
        if batch.socket is not None:  # before the connection (and its socket) is closed
            loop = asyncio.get_running_loop()
            loop.remove_reader(batch.socket)
            if batch.writing:
                loop.remove_writer(batch.socket)
            batch.socket, batch.writing = None, False

    def _settle(self, batch: _Batch, stored: set[str] | Exception) -> None:
        """Answer the batch's requests; new ids join the next queue message; store the next."""
        self._unwatch(batch)
        if batch.expiry is not None:
            batch.expiry.cancel()
        if batch is self._batch:
            self._batch = None
        if isinstance(stored, Exception) and is_data_error(stored):
            self._split(batch, stored)
        elif isinstance(stored, Exception):
            if isinstance(stored, StoreUnavailable):
                self.problem = stored.detail
            for pending in batch.pendings:
                # A done future is a cancelled request (its client went away).
                if not pending.stored.done():
                    pending.stored.set_exception(stored)
        else:
            self.problem = None
            self._answer(batch, stored)
            self._queue(stored, batch)
        self._flush()

    def _split(self, batch: _Batch, exc: Exception) -> None:
        """A data error: store each half on its own, down to the one request at fault."""
        if len(batch.pendings) > 1:
            middle = len(batch.pendings) // 2
            self._halves[:0] = [batch.pendings[:middle], batch.pendings[middle:]]
            return
        [pending] = batch.pendings
        log.warning("webhook not stored", extra={"source": pending.source.name})
        if not pending.stored.done():
            pending.stored.set_exception(rejection(pending.rows, exc))

    def _answer(self, batch: _Batch, stored: set[str]) -> None:
        for pending in batch.pendings:
            # A done future is a cancelled request (its client went away); its rows still count.
            if not pending.stored.done():
                pending.stored.set_result([row.id for row in pending.rows if row.id in stored])
            for row in pending.rows:
                log.info(
                    "webhook received",
                    extra={
                        "source": pending.source.name,
                        "call_id": row.provider_call_id,
                        "event_id": row.id,
                        "outcome": "accepted" if row.id in stored else "duplicate",
                    },
                )

    def _queue(self, stored: set[str], batch: _Batch) -> None:
        if not stored:
            return
        self._unsent.extend(sorted(stored))
        if tracing.on():
            self._unsent_traces += [
                pending.trace
                for pending in batch.pendings
                if pending.trace is not None and any(row.id in stored for row in pending.rows)
            ]
        if len(self._unsent) >= MAX_UNSENT:
            self._send()
        elif self._send_later is None:
            self._send_later = asyncio.get_running_loop().call_later(LINGER_S, self._send)

    def _send(self) -> None:
        if self._send_later is not None:
            self._send_later.cancel()
        ids, self._unsent, self._send_later = self._unsent, [], None
        traces, self._unsent_traces = self._unsent_traces, []
        if not ids:
            return
        # One message for many webhooks: tracing.batch continues the first one's trace and links
        # each, so every webhook's trace leads to its message (docs/operations.md#traces).
        attributes = {"messaging.system": "celery", "messaging.batch.message_count": len(ids)}
        with tracing.batch("send callwatch.ingest", traces, attributes):
            self._enqueue(ids)
