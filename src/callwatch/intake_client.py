"""The web process's side of intake: starts the intake process and awaits its outcomes."""

import asyncio
import itertools
import logging
import multiprocessing
import socket
from multiprocessing.process import BaseProcess

from callwatch import errors, intake
from callwatch.frames import FrameBuffer, frame
from callwatch.intake import INCOMING, OUTCOME, Incoming, Outcome
from callwatch.settings import Settings

log = logging.getLogger("callwatch.intake")

# A forkserver forks intake processes from a clean, single-threaded process that has imported
# intake once: a new one starts in milliseconds and inherits none of the web process's threads
# or connections.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["callwatch.intake"])

# The errors an outcome may name; any other name is an internal error (500).
_ERRORS = {cls.__name__: cls for cls in errors.RequestError.__subclasses__()}


def error_of(outcome: Outcome) -> Exception:
    """The exception an outcome names (for the web edge to map as usual)."""
    if outcome.error == errors.StoreUnavailable.__name__:
        return errors.StoreUnavailable(outcome.detail)
    error = _ERRORS.get(outcome.error or "")
    if error is None:
        return RuntimeError(f"webhook intake failed: {outcome.error}: {outcome.detail}")
    return error(outcome.detail, field=outcome.field)


class IntakeClient:
    """Forwards each webhook request to the intake process; its outcome means committed (or not)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._numbers = itertools.count()
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._unsent: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._replies: _Replies | None = None
        self._process: BaseProcess | None = None
        self._starting: asyncio.Lock | None = None

    async def submit(self, incoming: Incoming, body: bytes) -> Outcome:
        """What became of one request (raises StoreUnavailable if intake is lost meanwhile)."""
        if self._transport is None:
            await self._start()
        number = next(self._numbers) & 0xFFFFFFFF
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._pending[number] = future
        # The requests that arrive in one turn of the event loop go out in one write.
        if not self._unsent:
            loop.call_soon(self._send)
        self._unsent.append(frame(number, INCOMING.dump_json(incoming) + b"\n" + body))
        return OUTCOME.validate_json(await future)

    def _send(self) -> None:
        frames, self._unsent = self._unsent, []
        if frames and self._transport is not None:
            self._transport.write(b"".join(frames))

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
            target=intake.main, args=(theirs, self._settings), name="callwatch-intake"
        )
        process.daemon = True  # never outlives the web process
        process.start()
        theirs.close()
        self._process = process
        return ours

    async def stop(self) -> None:
        """Close our end, which intake takes as the signal to finish and exit."""
        self._send()
        replies, self._replies = self._replies, None  # from here, losing intake is planned
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
        if future is not None and not future.done():
            future.set_result(payload)

    def _lost(self, replies: "_Replies") -> None:
        """Intake exited: whoever waits gets a 503, and the next request starts a new one."""
        if replies is not self._replies:
            return
        self._transport = self._replies = None
        self._unsent = []  # their requests are among the pending, answered below
        log.warning("the intake process exited; the next webhook starts another")
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(errors.StoreUnavailable("the intake process stopped; retry"))


class _Replies(asyncio.Protocol):
    def __init__(self, client: IntakeClient) -> None:
        self._client = client
        self._frames = FrameBuffer()
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        for number, payload in self._frames.feed(data):
            self._client._settle(number, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)
        self._client._lost(self)
