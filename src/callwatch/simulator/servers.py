"""Loopback HTTP servers: a background uvicorn, and the platforms' detail APIs and recordings."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
import wave
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from types import TracebackType
from typing import Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from callwatch.model.records import Recording
from callwatch.simulator.base import Endpoint, Platform
from callwatch.simulator.calls import SimCall, recording_url
from callwatch.simulator.platforms import PLATFORMS

STARTUP_TIMEOUT_S = 10.0
ROOT_PLATFORM = "generic"  # also served at the root, where its `detail_url` always was


class BackgroundServer:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (free port) in a thread; a context manager."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._closing = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("server is not running; use it as a context manager")
        return self._url

    def start(self) -> None:
        # TCP named: asyncio sets TCP_NODELAY only where the socket's proto says TCP, and the
        # connections accepted inherit it. Without, a keep-alive reply stalled ~40 ms (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"sim-server-{port}", daemon=True
        )
        self._server, self._thread = server, thread
        self._url = f"http://127.0.0.1:{port}"
        self._closing.clear()
        thread.start()
        self._wait_started(sock)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._closing.set()
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join()
        self._server = self._thread = self._url = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def pause(self, seconds: float) -> None:
        """Sleep inside a request, cut short when the server is stopping."""
        deadline = time.monotonic() + seconds
        while not self._closing.is_set() and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(0.05, left))

    def _wait_started(self, sock: socket.socket) -> None:
        assert self._server is not None
        assert self._thread is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError("simulator server did not start")
            time.sleep(0.01)


@dataclass
class _Registered:
    call: SimCall
    fail_first: int
    always_fail: bool
    throttle_first: int
    retry_after_s: float
    recording_after_s: float | None
    hang_first_s: float
    detail_requests: int = 0
    recording_requests: int = 0
    recording_ready_at: float | None = None  # set by the first request


class DetailServer(BackgroundServer):
    """Every platform's API about the calls added, and their recordings, with per-call knobs.

    A platform's routes are under `/{name}` (`api_base_url(name)`); the generic platform's are
    at the root too (`detail_url`)."""

    def __init__(self, platforms: Mapping[str, Platform] = PLATFORMS) -> None:
        self._platforms = platforms
        self._calls: dict[str, _Registered] = {}
        self._ids: dict[tuple[str, str], str] = {}  # (platform, its call id) -> SimCall id
        self._lock = threading.Lock()
        routes = [Route("/recordings/{call_id}.wav", self._recording)]
        for name, platform in platforms.items():
            prefixes = [f"/{name}", ""] if name == ROOT_PLATFORM else [f"/{name}"]
            routes += [
                Route(prefix + path, self._serving(name, endpoint))
                for path, endpoint in platform.api.items()
                for prefix in prefixes
            ]
        super().__init__(Starlette(routes=routes))

    @property
    def detail_url(self) -> str:
        """The template callwatch's generic source takes as `settings.detail_url`."""
        return self.url + "/calls/{call_id}"

    def api_base_url(self, platform: str) -> str:
        """Where `platform`'s API is served: a source's `settings.api_base_url`."""
        if platform not in self._platforms:
            raise KeyError(f"no simulated platform {platform!r}")
        return f"{self.url}/{platform}"

    def add(
        self,
        call: SimCall,
        *,
        fail_first: int = 0,
        always_fail: bool = False,
        throttle_first: int = 0,
        retry_after_s: float = 1,
        recording_after_s: float | None = 0,
        hang_first_s: float = 0,
    ) -> None:
        """Serve `call` on every platform's API: its first requests (whichever route) hang,
        fail, then throttle, as configured; its recording is ready `recording_after_s` after
        the first request (None: never), as a platform's is some time after the call ended:
        counted from `add`, a slow first fetch would find it ready already."""
        entry = _Registered(
            call,
            fail_first,
            always_fail,
            throttle_first,
            retry_after_s,
            recording_after_s,
            hang_first_s,
        )
        with self._lock:
            self._calls[call.call_id] = entry
            for name, platform in self._platforms.items():
                self._ids[name, platform.call_id(call)] = call.call_id

    def requests(self, call_id: str) -> int:
        """API requests received about the SimCall `call_id`, on any route (whatever answered)."""
        with self._lock:
            entry = self._calls.get(call_id)
            return entry.detail_requests if entry else 0

    def recording_requests(self, call_id: str) -> int:
        with self._lock:
            entry = self._calls.get(call_id)
            return entry.recording_requests if entry else 0

    def _serving(
        self, platform: str, endpoint: Endpoint
    ) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            platform_call_id = request.path_params["call_id"]
            with self._lock:
                sim_call_id = self._ids.get((platform, platform_call_id))
                entry = self._calls.get(sim_call_id) if sim_call_id else None
                if entry is None:
                    return _not_found(platform_call_id)
                index = entry.detail_requests
                entry.detail_requests += 1
                if index == 0 and entry.recording_after_s is not None:
                    entry.recording_ready_at = time.monotonic() + entry.recording_after_s
            failure = await self._failure(entry, index)
            if failure is not None:
                return failure
            return JSONResponse(endpoint(entry.call, self._recording_of(entry)))

        return answer

    async def _failure(self, entry: _Registered, index: int) -> Response | None:
        """How the `index`-th request about the call goes wrong, if it does."""
        if index == 0 and entry.hang_first_s > 0:
            await self.pause(entry.hang_first_s)
        if entry.always_fail or index < entry.fail_first:
            return JSONResponse({"error": "internal_error"}, status_code=500)
        if index < entry.fail_first + entry.throttle_first:
            retry_after = {"Retry-After": f"{entry.retry_after_s:g}"}
            return JSONResponse({"error": "rate_limited"}, status_code=429, headers=retry_after)
        return None

    def _recording_of(self, entry: _Registered) -> Recording:
        """`none` for a call without one, `pending` until it is ready, then its URLs here."""
        if entry.call.detail.recording is None:
            return Recording(status="none")
        ready = entry.recording_ready_at
        if ready is None or time.monotonic() < ready:
            return Recording(status="pending")
        url = recording_url(self.url, entry.call.call_id)
        return Recording(status="available", url=url, dual_url=f"{url}?channels=2")

    async def _recording(self, request: Request) -> Response:
        call_id = request.path_params["call_id"]
        with self._lock:
            entry = self._calls.get(call_id)
            if entry is None:
                return _not_found(call_id)
            entry.recording_requests += 1
        channels = 2 if request.query_params.get("channels") == "2" else 1
        return Response(silence_wav(channels=channels), media_type="audio/wav")


def _not_found(call_id: str) -> Response:
    return JSONResponse({"error": "not_found", "call_id": call_id}, status_code=404)


@cache
def silence_wav(seconds: float = 0.1, *, channels: int = 1, rate: int = 8000) -> bytes:
    """A valid 16-bit PCM WAV file of silence."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * channels * round(rate * seconds))
    return buffer.getvalue()
