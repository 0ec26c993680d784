"""Webhook intake on the web process's event loop: verify, parse, store in group commits, enqueue.

Each request is verified and parsed in its own task as it arrives; the requests parsed while a
batch is being stored wait, and go together in the next one (at most `MAX_BATCH`). On Postgres a
batch goes through `InboxWriter`'s non-blocking connection, watched by the event loop, so the loop
serves other requests meanwhile; on SQLite it is stored on a worker thread. A request's future
resolves once its batch has committed, and only then does the endpoint answer 202.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from callwatch import ids, providers, tenancy
from callwatch.crypto import Vault
from callwatch.db import transaction
from callwatch.errors import NotFound, Unauthorized
from callwatch.events import CallEvent
from callwatch.inbox import InboxRow, store
from callwatch.inbox_writer import InboxWriter
from callwatch.providers.base import SourceConfig, WebhookRequest

log = logging.getLogger("callwatch.webhooks")

APPLICATION_NAME = "callwatch-intake"  # the writer's connection in pg_stat_activity
# How long stored ids wait to share one queue message: at 125 calls/s, 20 ms made messages of
# ~9 ids, 50 ms of ~23, and a worker's CPU per call fell by a third (bench/README.md).
LINGER_S = 0.05
MAX_UNSENT = 500
# Requests per INSERT: uncapped, batches of 30 and more formed, with stalls near 100 ms (bench).
MAX_BATCH = 16


class Sources:
    """Webhook token → source, kept for `ttl_s`; a miss is read on a worker thread, once.

    Unknown tokens are kept too (as None), so at most `limit` entries: a scan of random tokens
    must not grow the cache without bound.
    """

    def __init__(
        self, sessions: sessionmaker[Session], vault: Vault, ttl_s: float, limit: int = 10_000
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self._ttl_s = ttl_s
        self._limit = limit
        self._entries: dict[str, tuple[float, SourceConfig | None]] = {}
        self._loading: dict[str, asyncio.Future[SourceConfig | None]] = {}

    async def lookup(self, token: str) -> SourceConfig:
        """The token's source (raises NotFound, or StoreUnavailable)."""
        loop = asyncio.get_running_loop()
        hit = self._entries.get(token)
        if hit is not None and hit[0] > loop.time():
            source = hit[1]
        else:
            loading = self._loading.get(token)
            if loading is None:
                loading = self._loading[token] = asyncio.ensure_future(self._load(token))
                loading.add_done_callback(lambda _: self._loading.pop(token, None))
            source = await asyncio.shield(loading)
        if source is None:
            raise NotFound("unknown webhook token")
        return source

    async def _load(self, token: str) -> SourceConfig | None:
        source = await asyncio.to_thread(self._read, token)
        if self._ttl_s > 0:
            if len(self._entries) >= self._limit:
                self._entries.clear()
            self._entries[token] = (asyncio.get_running_loop().time() + self._ttl_s, source)
        return source

    def _read(self, token: str) -> SourceConfig | None:
        with transaction(self._sessions) as session:
            return tenancy.source_by_token(session, self._vault, token)


def rows_of(source: SourceConfig, request: WebhookRequest) -> list[InboxRow]:
    """Verify a request and parse its events into inbox rows (raises a RequestError)."""
    allowed = source.settings.get("allowed_ips") or []
    if allowed and not tenancy.ip_allowed(allowed, request.client_ip):
        raise Unauthorized(f"client address {request.client_ip} is not in the allowed_ips")
    adapter = providers.get(source.provider)
    delivery_id = adapter.authenticate(request, source, request.received_at.timestamp())
    return [_row(source, event, request) for event in adapter.parse(request, delivery_id)]


def _row(source: SourceConfig, event: CallEvent, request: WebhookRequest) -> InboxRow:
    return InboxRow(
        id=ids.new_id("evt"),
        org_id=source.org_id,
        source_id=source.id,
        dedupe_key=event.dedupe_key,
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


class Intake:
    """Group commit of parsed requests, then one queue message per `LINGER_S` of stored ids.

    Stored ids wait up to `LINGER_S` to share a queue message: a worker's cost is mostly per
    message (delivery, ack, a transaction), so a trickle of events should not mean one each.
    `enqueue` must not block (`queue.Background`): the event loop would wait on Redis.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sources: Sources,
        enqueue: Callable[[list[str]], None],
        writer: InboxWriter | None = None,
    ) -> None:
        self.sources = sources
        self._sessions = sessions
        self._enqueue = enqueue
        self._writer = writer
        self._waiting: list[_Pending] = []
        self._storing: list[_Pending] = []
        self._flush_soon = False
        self._task: asyncio.Task[None] | None = None  # a batch stored or connected off the loop
        self._unsent: list[str] = []
        self._send_later: asyncio.TimerHandle | None = None

    async def submit(self, source: SourceConfig, request: WebhookRequest) -> list[str]:
        """Verify, parse and store a request: its new event ids, empty if all were duplicates."""
        rows = rows_of(source, request)
        loop = asyncio.get_running_loop()
        pending = _Pending(source, rows, loop.create_future())
        self._waiting.append(pending)
        if not self._storing and not self._flush_soon:
            # After the other requests of this turn of the loop, so that they share the batch.
            self._flush_soon = True
            loop.call_soon(self._flush)
        return await pending.stored

    def close(self) -> None:
        """Send the ids still waiting for their queue message, and drop the connection."""
        self._send()
        if self._writer is not None:
            self._writer.close()

    def _flush(self) -> None:
        self._flush_soon = False
        if self._storing or not self._waiting:
            return
        self._storing, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
        rows = [row for pending in self._storing for row in pending.rows]
        loop = asyncio.get_running_loop()
        if self._writer is None:
            self._task = loop.create_task(self._store_on_thread(rows))
        elif not self._writer.connected:
            self._task = loop.create_task(self._connect_then_send(rows))
        else:
            self._send_batch(rows)

    async def _store_on_thread(self, rows: list[InboxRow]) -> None:
        try:
            stored: set[str] | Exception = await asyncio.to_thread(self._store, rows)
        except Exception as exc:
            stored = exc
        self._settle(stored)

    def _store(self, rows: list[InboxRow]) -> set[str]:
        with transaction(self._sessions) as session:
            return store(session, rows)

    async def _connect_then_send(self, rows: list[InboxRow]) -> None:
        assert self._writer is not None
        try:
            await asyncio.to_thread(self._writer.connect)
        except Exception as exc:
            self._settle(exc)
            return
        self._send_batch(rows)

    def _send_batch(self, rows: list[InboxRow]) -> None:
        writer = self._writer
        assert writer is not None
        try:
            writer.send(rows)
        except Exception as exc:
            self._failed(writer, exc)
            return
        fileno = writer.fileno()
        asyncio.get_running_loop().add_reader(fileno, self._progress, writer, fileno)

    def _progress(self, writer: InboxWriter, fileno: int) -> None:
        try:
            stored = writer.poll()
        except Exception as exc:
            asyncio.get_running_loop().remove_reader(fileno)
            self._failed(writer, exc)
            return
        if stored is not None:
            asyncio.get_running_loop().remove_reader(fileno)
            self._settle(stored)

    def _failed(self, writer: InboxWriter, exc: Exception) -> None:
        writer.close()  # the server rolls the batch back; the next batch reconnects
        self._settle(exc)

    def _settle(self, stored: set[str] | Exception) -> None:
        """Answer the batch's requests; new ids join the next queue message; store the next."""
        batch, self._storing = self._storing, []
        for pending in batch:
            # A done future is a cancelled request (its client went away); its rows still count.
            if isinstance(stored, Exception):
                if not pending.stored.done():
                    pending.stored.set_exception(stored)
                continue
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
        if not isinstance(stored, Exception) and stored:
            self._unsent.extend(sorted(stored))
            if len(self._unsent) >= MAX_UNSENT:
                self._send()
            elif self._send_later is None:
                self._send_later = asyncio.get_running_loop().call_later(LINGER_S, self._send)
        self._flush()

    def _send(self) -> None:
        if self._send_later is not None:
            self._send_later.cancel()
        ids, self._unsent, self._send_later = self._unsent, [], None
        if ids:
            self._enqueue(ids)
