"""The web process's side of the inbox writer: starts the process and awaits its replies."""

import asyncio
import itertools
import logging
import multiprocessing
import socket
from collections.abc import Sequence
from multiprocessing.process import BaseProcess

from callwatch import inbox_writer
from callwatch.errors import StoreUnavailable
from callwatch.inbox import ROW_JSON, InboxRow
from callwatch.inbox_writer import FAILED, UNAVAILABLE, FrameBuffer, frame
from callwatch.settings import Settings

log = logging.getLogger("callwatch.inbox")

# A forkserver forks writers from a clean, single-threaded process that has imported the writer
# once: a fresh writer starts in milliseconds, and never inherits the web process's threads or
# connections.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["callwatch.inbox_writer"])


class InboxClient:
    """Sends each request's rows to the writer process; a reply means committed (or not)."""

    def __init__(self, settings: Settings) -> None:
        self._args = (settings.database_url, settings.broker_url, settings.log_level)
        self._numbers = itertools.count()
        self._pending: dict[int, asyncio.Future[list[bool]]] = {}
        self._transport: asyncio.Transport | None = None
        self._replies: _Replies | None = None
        self._process: BaseProcess | None = None
        self._starting: asyncio.Lock | None = None

    async def submit(self, rows: Sequence[InboxRow]) -> list[bool]:
        """For each row, True if it is new and False if it was a duplicate."""
        if not rows:
            return []
        transport = self._transport or await self._start()
        number = next(self._numbers) & 0xFFFFFFFF
        ids = b" ".join(row.id.encode() for row in rows)
        lines = b"\n".join(ROW_JSON.dump_json(row) for row in rows)
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._pending[number] = future
        transport.write(frame(number, ids + b"\n" + lines))
        return await future

    async def start(self) -> None:
        await self._start()

    async def _start(self) -> asyncio.Transport:
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:
            if self._transport is None:
                sock = await asyncio.to_thread(self._spawn)
                replies = self._replies = _Replies(self)
                transport, _ = await asyncio.get_running_loop().create_unix_connection(
                    lambda: replies, sock=sock
                )
                self._transport = transport
            return self._transport

    def _spawn(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        process = _CONTEXT.Process(
            target=inbox_writer.main, args=(theirs, *self._args), name="callwatch-inbox-writer"
        )
        process.daemon = True  # never outlives the web process
        process.start()
        theirs.close()
        self._process = process
        return ours

    async def stop(self) -> None:
        """Close our end, which the writer takes as the signal to finish and exit."""
        replies, self._replies = self._replies, None  # from here, losing the writer is planned
        if self._transport is not None and replies is not None:
            self._transport.close()
            await replies.closed
        self._transport = None
        if self._process is not None:
            await asyncio.to_thread(self._process.join, 10)
            if self._process.is_alive():
                self._process.kill()
            self._process = None

    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _settle(self, number: int, payload: bytes) -> None:
        future = self._pending.pop(number, None)
        if future is None or future.done():
            return
        kind, message = payload[:2], payload[2:].decode()
        if kind == UNAVAILABLE:
            future.set_exception(StoreUnavailable(message))
        elif kind == FAILED:
            future.set_exception(RuntimeError(f"the inbox write failed: {message}"))
        else:
            future.set_result([flag == 49 for flag in payload])

    def _lost(self, replies: "_Replies") -> None:
        """The writer exited: whoever waits gets a 503, and the next request starts a new one."""
        if replies is not self._replies:
            return
        self._transport = self._replies = None
        log.warning("the inbox writer exited; the next webhook starts another")
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(StoreUnavailable("the inbox writer stopped; retry"))


class _Replies(asyncio.Protocol):
    def __init__(self, client: InboxClient) -> None:
        self._client = client
        self._frames = FrameBuffer()
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        for number, payload in self._frames.feed(data):
            self._client._settle(number, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)
        self._client._lost(self)
