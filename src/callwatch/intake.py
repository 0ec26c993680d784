"""The intake process: a child of the web process that verifies, parses and stores webhooks.

The work of a webhook (source look-up, signature, parsing, the group commit and the enqueue)
runs here, beside the web process rather than under its GIL: the web process only speaks HTTP.
It forwards each request as a frame (an `Incoming` JSON line, a newline, the body) and awaits
one `Outcome` frame. On Postgres a batch's INSERT is in flight (`inbox_writer`) while the
requests that arrive meanwhile are verified and parsed: they form the next batch.
"""

import dataclasses
import logging
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import TypeAdapter
from sqlalchemy.orm import Session, sessionmaker

from callwatch import ids, providers, tenancy
from callwatch.crypto import Vault
from callwatch.db import make_engine, make_sessionmaker, transaction
from callwatch.errors import CallwatchError, NotFound, RequestError, Unauthorized
from callwatch.events import CallEvent
from callwatch.frames import Frame, FrameBuffer, frame
from callwatch.inbox import InboxRow, store
from callwatch.inbox_writer import InboxWriter
from callwatch.logs import configure_logging
from callwatch.providers.base import RequestHeaders, SourceConfig, WebhookRequest
from callwatch.queue import Background, Producer
from callwatch.runtime import secret_key
from callwatch.settings import Settings

log = logging.getLogger("callwatch.webhooks")

APPLICATION_NAME = "callwatch-intake"  # its connection in pg_stat_activity
# How long stored ids wait to share one queue message: at 125 calls/s, 20 ms made messages of
# ~9 ids, 50 ms of ~23, and a worker's CPU per call fell by a third (bench/README.md).
LINGER_S = 0.05
MAX_UNSENT = 500
# Requests per INSERT: uncapped, batches of 30 and more formed, with stalls near 100 ms (bench).
MAX_BATCH = 16
RECV_BYTES = 1 << 20


@dataclasses.dataclass
class Incoming:
    """A webhook request as the web process received it (the body follows on the wire)."""

    token: str
    headers: list[tuple[str, str]]
    client_ip: str | None
    url: str  # as the platform addressed it: CALLWATCH_PUBLIC_URL + path + query string
    received_at: datetime


@dataclasses.dataclass
class Outcome:
    """What became of one request: its stored event ids, or the error to answer with."""

    provider: str | None = None
    status: Literal["accepted", "duplicate"] | None = None
    events: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None  # the name of a class in errors.py; anything else is a 500
    detail: str = ""
    field: str | None = None


# Both go over the wire as JSON through these adapters: a plain dataclass and one call into
# pydantic-core each way, where a BaseModel built with model_construct cost the web process ~6 µs
# per webhook (bench/README.md).
INCOMING = TypeAdapter(Incoming)
OUTCOME = TypeAdapter(Outcome)


class Sources:
    """Webhook token → source, kept for `ttl_s` so intake does not read the database per request."""

    def __init__(self, sessions: sessionmaker[Session], vault: Vault, ttl_s: float) -> None:
        self._sessions = sessions
        self._vault = vault
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, SourceConfig | None]] = {}

    def lookup(self, token: str) -> SourceConfig | None:
        now = time.monotonic()
        hit = self._entries.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        with transaction(self._sessions) as session:
            source = tenancy.source_by_token(session, self._vault, token)
        if self._ttl_s > 0:
            self._entries[token] = (now + self._ttl_s, source)
        return source


@dataclasses.dataclass
class Accepted:
    """A verified, parsed request: its rows are ready to store."""

    number: int
    source: SourceConfig
    rows: list[InboxRow]


def rows_of(accepted: list[Accepted]) -> list[InboxRow]:
    return [row for request in accepted for row in request.rows]


def _frames(outcomes: dict[int, Outcome]) -> bytes:
    return b"".join(frame(n, OUTCOME.dump_json(reply)) for n, reply in outcomes.items())


class Intake:
    """The work on a batch of requests: parse them, store their rows together, settle replies.

    Stored ids wait up to `LINGER_S` to share a queue message: a worker's cost is mostly per
    message (delivery, ack, a transaction), so a trickle of events should not mean one each.
    `enqueue` must not block (`queue.Background`): a batch's commit would wait behind it.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sources: Sources,
        enqueue: Callable[[list[str]], None],
    ) -> None:
        self._sessions = sessions
        self._sources = sources
        self._enqueue = enqueue
        self._unsent: list[str] = []
        self._send_by: float | None = None

    def parse(self, requests: list[Frame]) -> tuple[bytes, list[Accepted]]:
        """Verify and parse: the reply frames of the requests that failed, and the others."""
        failed: dict[int, Outcome] = {}
        accepted: list[Accepted] = []
        for number, payload in requests:
            source: SourceConfig | None = None
            try:
                header, _, body = payload.partition(b"\n")
                incoming = INCOMING.validate_json(header)
                source = self._sources.lookup(incoming.token)
                if source is None:
                    raise NotFound("unknown webhook token")
                accepted.append(Accepted(number, source, _rows(incoming, source, body)))
            except Exception as exc:
                failed[number] = _failed(source, exc)
        return _frames(failed), accepted

    def store(self, accepted: list[Accepted]) -> set[str] | Exception:
        """Store the requests' rows in one transaction: the new ids, or what went wrong."""
        try:
            with transaction(self._sessions) as session:
                return store(session, rows_of(accepted))
        except Exception as exc:  # every waiting request must hear about the failure
            return exc

    def settle(self, accepted: list[Accepted], stored: set[str] | Exception) -> bytes:
        """The reply frames of stored (or failed) requests; new ids join the next queue message."""
        if isinstance(stored, Exception):
            return _frames(
                {request.number: _failed(request.source, stored) for request in accepted}
            )
        outcomes = {}
        for request in accepted:
            events = [row.id for row in request.rows if row.id in stored]
            outcomes[request.number] = Outcome(
                provider=request.source.provider,
                status="accepted" if events else "duplicate",
                events=events,
            )
            for row in request.rows:
                log.info(
                    "webhook received",
                    extra={
                        "source": request.source.name,
                        "call_id": row.provider_call_id,
                        "event_id": row.id,
                        "outcome": "accepted" if row.id in stored else "duplicate",
                    },
                )
        if stored and self._send_by is None:
            self._send_by = time.monotonic() + LINGER_S
        self._unsent.extend(sorted(stored))
        return _frames(outcomes)

    def until_send(self) -> float | None:
        if self._send_by is None:
            return None
        if len(self._unsent) >= MAX_UNSENT:
            return 0.0
        return max(0.0, self._send_by - time.monotonic())

    def send(self) -> None:
        ids, self._unsent, self._send_by = self._unsent, [], None
        if ids:
            self._enqueue(ids)


def _rows(incoming: Incoming, source: SourceConfig, body: bytes) -> list[InboxRow]:
    allowed = source.settings.get("allowed_ips") or []
    if allowed and incoming.client_ip not in allowed:
        raise Unauthorized(f"client address {incoming.client_ip} is not in the allowed_ips")
    headers = RequestHeaders(incoming.headers)
    request = WebhookRequest(
        body=body,
        headers=headers,
        content_type=headers.get("content-type", ""),
        client_ip=incoming.client_ip,
        url=incoming.url,
        received_at=incoming.received_at,
    )
    adapter = providers.get(source.provider)
    delivery_id = adapter.authenticate(request, source, incoming.received_at.timestamp())
    events = adapter.parse(request, delivery_id)
    return [_row(source, event, request) for event in events]


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


def _failed(source: SourceConfig | None, exc: Exception) -> Outcome:
    provider = source.provider if source is not None else None
    error = type(exc).__name__
    if isinstance(exc, RequestError):
        return Outcome(provider=provider, error=error, detail=exc.detail, field=exc.field)
    if not isinstance(exc, CallwatchError):
        log.error("webhook intake failed", exc_info=exc)
    return Outcome(provider=provider, error=error, detail=str(exc))


def serve(connection: socket.socket, intake: Intake, writer: InboxWriter | None = None) -> None:
    """Answer requests until the web process closes its end.

    With a writer (Postgres), a batch is in flight while the requests that arrive meanwhile are
    verified and parsed, one per turn of the loop so that the batch's progress is not kept
    waiting; they are the next batch. Without one, each batch is stored as soon as it is parsed.
    """
    frames = FrameBuffer()
    unparsed: deque[Frame] = deque()
    waiting: list[Accepted] = []
    storing: list[Accepted] = []

    def parse(count: int) -> None:
        requests = [unparsed.popleft() for _ in range(min(count, len(unparsed)))]
        if requests:
            replies, accepted = intake.parse(requests)
            if replies:
                connection.sendall(replies)
            waiting.extend(accepted)

    with selectors.DefaultSelector() as selector:
        selector.register(connection, selectors.EVENT_READ)
        while True:
            if storing:
                parse(1)
            else:
                parse(MAX_BATCH - len(waiting))
            while waiting and not storing:
                batch, waiting[:] = waiting[:MAX_BATCH], waiting[MAX_BATCH:]
                if writer is None:
                    connection.sendall(intake.settle(batch, intake.store(batch)))
                    continue
                try:
                    writer.send(rows_of(batch))
                    selector.register(writer.fileno(), selectors.EVENT_READ, _DATABASE)
                    storing = batch
                except Exception as exc:
                    connection.sendall(intake.settle(batch, exc))
            for key, _ in selector.select(0 if unparsed else intake.until_send()):
                if key.data is _DATABASE:
                    assert writer is not None
                    stored = _poll(writer)
                    if stored is not None:
                        selector.unregister(key.fileobj)
                        connection.sendall(intake.settle(storing, stored))
                        storing = []
                    continue
                data = connection.recv(RECV_BYTES)
                if not data:
                    intake.send()
                    return
                unparsed.extend(frames.feed(data))
            if intake.until_send() == 0:
                intake.send()


_DATABASE = object()


def _poll(writer: InboxWriter) -> set[str] | Exception | None:
    try:
        return writer.poll()
    except Exception as exc:
        return exc


def main(connection: socket.socket, settings: Settings) -> None:
    """The intake process: its own database connection and Redis client."""
    # Ctrl-C, or a stop signal to the whole process group, must not cut in-flight requests
    # short: the web process stops intake by closing the socket after its last request, and
    # the socket closes too if the web process dies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(settings.log_level)
    # No ping per checkout: at hundreds of batches a second it would add a round trip to each,
    # and a dead connection fails just one batch (503, the platform retries).
    engine = make_engine(
        settings.database_url, name=APPLICATION_NAME, pool_pre_ping=False, pool_size=1
    )
    sessions = make_sessionmaker(engine)
    producer = Producer(settings.broker_url)
    enqueue = Background(producer.ingest)
    sources = Sources(sessions, Vault(secret_key(settings)), settings.source_cache_s)
    writer = None
    if engine.dialect.name == "postgresql":
        writer = InboxWriter(settings.database_url, APPLICATION_NAME)
    try:
        serve(connection, Intake(sessions, sources, enqueue), writer)
    finally:
        if writer is not None:
            writer.close()
        connection.close()
        enqueue.close()
        producer.close()
        engine.dispose()
