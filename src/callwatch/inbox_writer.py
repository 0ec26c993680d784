"""The inbox writer: a child of the web process that stores intake's rows in group commits.

It runs in a process of its own so that its database and Redis round trips never wait for the
web process's GIL (in a thread they did: a batch took three times as long as on its own). The
web process sends it frames over a socket pair and awaits one reply frame per request.

Request payload: the row ids separated by spaces, a newline, then one `InboxRow` JSON per line.
Reply payload: one byte per row, `1` stored or `0` a duplicate; or `!u`/`!e` and a message when
the database was unavailable or the write failed otherwise.
"""

import logging
import selectors
import signal
import socket
import struct
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from callwatch.db import make_engine, make_sessionmaker, transaction
from callwatch.errors import StoreUnavailable
from callwatch.inbox import store
from callwatch.logs import configure_logging
from callwatch.queue import Producer

log = logging.getLogger("callwatch.inbox")

HEADER = struct.Struct(">II")  # payload length, request number
UNAVAILABLE = b"!u"
FAILED = b"!e"
APPLICATION_NAME = "callwatch-inbox-writer"  # its connection in pg_stat_activity
LINGER_S = 0.02  # how long stored ids wait to share one queue message
MAX_UNSENT = 500
RECV_BYTES = 1 << 20

Frame = tuple[int, bytes]


def frame(number: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), number) + payload


class FrameBuffer:
    """Cuts a byte stream into (request number, payload) frames."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._data += data
        frames: list[Frame] = []
        offset, size = 0, len(self._data)
        while size - offset >= HEADER.size:
            length, number = HEADER.unpack_from(self._data, offset)
            end = offset + HEADER.size + length
            if end > size:
                break
            frames.append((number, bytes(self._data[offset + HEADER.size : end])))
            offset = end
        del self._data[:offset]
        return frames


class Batcher:
    """Writes the requests that arrived together in one transaction and queues the stored ids.

    Stored ids wait up to `LINGER_S` to share a queue message: a worker's cost is mostly per
    message (delivery, ack, a transaction), so a trickle of events should not mean one each.
    """

    def __init__(self, sessions: sessionmaker[Session], enqueue: Callable[[list[str]], None]):
        self._sessions = sessions
        self._enqueue = enqueue
        self._unsent: list[str] = []
        self._send_by: float | None = None

    def write(self, requests: list[Frame]) -> bytes:
        """Store the requests' rows; returns their reply frames."""
        split = [(number, payload.partition(b"\n")) for number, payload in requests]
        rows = [row for _, (_, _, lines) in split for row in lines.split(b"\n")]
        try:
            with transaction(self._sessions) as session:
                inserted = store(session, rows)
        except StoreUnavailable as exc:
            return _failure(requests, UNAVAILABLE, str(exc))
        except Exception as exc:  # every waiting request must hear about the failure
            log.exception("inbox write failed")
            return _failure(requests, FAILED, f"{type(exc).__name__}: {exc}")
        replies = []
        for number, (ids, _, _) in split:
            flags = [row_id.decode() in inserted for row_id in ids.split(b" ")]
            replies.append(frame(number, bytes(b"01"[new] for new in flags)))
        if inserted and self._send_by is None:
            self._send_by = time.monotonic() + LINGER_S
        self._unsent.extend(sorted(inserted))
        return b"".join(replies)

    def until_send(self) -> float | None:
        if self._send_by is None:
            return None
        if len(self._unsent) >= MAX_UNSENT:
            return 0.0
        return max(0.0, self._send_by - time.monotonic())

    def send(self) -> None:
        ids, self._unsent, self._send_by = self._unsent, [], None
        if not ids:
            return
        try:
            self._enqueue(ids)
        except Exception:
            # Stored already: the sweeper re-enqueues rows that stay unprocessed.
            log.warning("enqueue failed; the sweeper will pick the events up", exc_info=True)


def _failure(requests: list[Frame], kind: bytes, message: str) -> bytes:
    return b"".join(frame(number, kind + message.encode()) for number, _ in requests)


def serve(connection: socket.socket, batcher: Batcher) -> None:
    """Answer requests until the web process closes its end."""
    frames = FrameBuffer()
    with selectors.DefaultSelector() as selector:
        selector.register(connection, selectors.EVENT_READ)
        while True:
            if not selector.select(batcher.until_send()):
                batcher.send()
                continue
            # What queued up while the last batch was written arrives in one read: the group.
            data = connection.recv(RECV_BYTES)
            if not data:
                batcher.send()
                return
            requests = frames.feed(data)
            if requests:
                connection.sendall(batcher.write(requests))
            if batcher.until_send() == 0:
                batcher.send()


def main(connection: socket.socket, database_url: str, broker_url: str, log_level: str) -> None:
    """The writer process: its own database connection and Redis client."""
    # Ctrl-C reaches the whole process group; the web process stops the writer by closing the
    # socket once it has answered its last request.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(log_level)
    # No ping per checkout: at hundreds of batches a second it would add a round trip to each,
    # and a dead connection fails just one batch (503, the platform retries).
    engine = make_engine(database_url, name=APPLICATION_NAME, pool_pre_ping=False, pool_size=1)
    producer = Producer(broker_url)
    try:
        serve(connection, Batcher(make_sessionmaker(engine), producer.ingest))
    finally:
        connection.close()
        producer.close()
        engine.dispose()
