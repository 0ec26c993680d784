"""A blocking check (a database or Redis round trip) for an async caller, bounded and shared.

At most one run of a check is under way: callers that arrive meanwhile wait for the same run,
each for at most `timeout_s`. A dependency that hangs then holds one worker thread, not one per
probe, and cannot starve the thread pool that intake and the API share.
"""

import asyncio
from collections.abc import Callable


class Probe:
    def __init__(self, check: Callable[[], object], timeout_s: float) -> None:
        self._check = check
        self._timeout_s = timeout_s
        self._running: asyncio.Future[object] | None = None

    async def __call__(self) -> str:
        """ "ok", or "unreachable: <the exception's class>" (TimeoutError: no answer in time)."""
        if self._running is None:
            self._running = asyncio.ensure_future(asyncio.to_thread(self._check))
            self._running.add_done_callback(self._done)
        try:
            await asyncio.wait_for(asyncio.shield(self._running), self._timeout_s)
        except Exception as exc:
            return f"unreachable: {type(exc).__name__}"
        return "ok"

    def _done(self, run: asyncio.Future[object]) -> None:
        self._running = None
        if not run.cancelled():
            run.exception()  # retrieved: the callers that waited have it
