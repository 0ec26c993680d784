"""Playing simulated calls into a webhook URL at a rate, with progress."""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from callwatch.simulator.base import Platform
from callwatch.simulator.calls import SIM_RECORDING_BASE, make_call
from callwatch.simulator.platforms import PLATFORMS
from callwatch.simulator.servers import DetailServer

CALL_PLAY_S = 2.5
POST_TIMEOUT_S = 10.0


@dataclass
class Progress:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    calls_started: int = 0
    calls_done: int = 0

    def snapshot(self) -> Progress:
        return replace(self, rejected=dict(self.rejected))


class _Tracker:
    """Thread-safe Progress; reports every change to `on_progress`, one at a time."""

    def __init__(self, on_progress: Callable[[Progress], None] | None) -> None:
        self._progress = Progress()
        self._lock = threading.Lock()
        self._on_progress = on_progress
        self.failure: Exception | None = None

    def update(self, change: Callable[[Progress], None]) -> None:
        with self._lock:
            change(self._progress)
            if self._on_progress is not None:
                self._on_progress(self._progress.snapshot())

    def snapshot(self) -> Progress:
        with self._lock:
            return self._progress.snapshot()

    def fail(self, exc: Exception) -> None:
        with self._lock:
            self.failure = self.failure or exc


def run_simulation(
    url: str,
    secret: str,
    *,
    calls: int | None,
    rate: float,
    seed: int | None = None,
    embed_detail: bool = True,
    server: DetailServer | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    play_s: float = CALL_PLAY_S,
    provider: str = "generic",
    calls_url: str | None = None,
    calls_secret: str = "",
    signed_url: str | None = None,
) -> Progress:
    """Start `calls` calls (None: until `stop` is set) at `rate` per second and post their events.

    Each call's events are posted in order over about `play_s` seconds; calls overlap. Returns
    once every started call has finished posting. `provider` names the platform (PLATFORMS)
    whose webhooks are played, signed with `secret` if it signs. For a platform that analyses
    another's calls, `calls_url` (and `calls_secret`) is where those calls are played.
    `signed_url` is the webhook URL as the platform knows it, when `url` reaches the same
    receiver another way (a platform that signs its URL signs that one).
    """
    platform = PLATFORMS.get(provider)
    if platform is None:
        raise ValueError(f"unknown platform {provider!r}; known: {', '.join(sorted(PLATFORMS))}")
    if rate <= 0:
        raise ValueError("rate must be positive")
    if calls is not None and calls < 0:
        raise ValueError("calls must not be negative")
    stop = stop if stop is not None else threading.Event()
    tracker = _Tracker(on_progress)
    workers = max(2, min(32, math.ceil(rate * (play_s + 1))))
    slots = threading.BoundedSemaphore(workers)
    master = random.Random(seed)
    with (
        httpx.Client(timeout=POST_TIMEOUT_S) as client,
        ThreadPoolExecutor(workers, thread_name_prefix="callwatch-sim") as pool,
    ):
        targets = [_Target(url, secret, platform, signed_url or url)]
        if platform.analyses is not None and calls_url is not None:
            analysed = PLATFORMS[platform.analyses]
            targets.append(_Target(calls_url, calls_secret, analysed, calls_url))
        player = _Player(targets, client, server, embed_detail, play_s, tracker, stop)
        try:
            _schedule(pool, slots, player, master, calls, rate, stop)
        except BaseException:
            stop.set()
            raise
    if tracker.failure is not None:
        raise tracker.failure
    return tracker.snapshot()


def _schedule(
    pool: ThreadPoolExecutor,
    slots: threading.BoundedSemaphore,
    player: _Player,
    master: random.Random,
    calls: int | None,
    rate: float,
    stop: threading.Event,
) -> None:
    began = time.monotonic()
    for index in _indices(calls):
        if stop.wait(max(0.0, began + index / rate - time.monotonic())):
            return
        if player.tracker.failure is not None:
            return
        while not slots.acquire(timeout=0.1):
            if stop.is_set():
                return
        player.tracker.update(_call_started)
        future = pool.submit(player.play, master.getrandbits(64))
        future.add_done_callback(lambda _: slots.release())


def _indices(limit: int | None) -> Iterator[int]:
    index = 0
    while limit is None or index < limit:
        yield index
        index += 1


@dataclass(frozen=True)
class _Target:
    """Where one platform's webhooks go."""

    url: str
    secret: str
    platform: Platform
    signed_url: str


@dataclass
class _Player:
    targets: list[_Target]
    client: httpx.Client
    server: DetailServer | None
    embed_detail: bool
    play_s: float
    tracker: _Tracker
    stop: threading.Event

    def play(self, call_seed: int) -> None:
        try:
            rng = random.Random(call_seed)
            base = self.server.url if self.server is not None else SIM_RECORDING_BASE
            call = make_call(rng, datetime.now(UTC), recording_base=base)
            if self.server is not None:
                fail_first = 1 if rng.random() < 0.05 else 0
                self.server.add(call, recording_after_s=rng.uniform(1, 5), fail_first=fail_first)
            timed = sorted(
                (
                    (at, index, body)
                    for index, target in enumerate(self.targets)
                    for at, body in target.platform.webhooks(call, self.embed_detail)
                ),
                key=lambda item: (item[0], item[1]),
            )
            gaps = play_gaps([at for at, _, _ in timed], self.play_s)
            for pause, (_, index, body) in zip(gaps, timed, strict=True):
                self.stop.wait(pause)
                self._post(self.targets[index], body)
            self.tracker.update(_call_done)
        except Exception as exc:
            self.tracker.fail(exc)

    def _post(self, target: _Target, body: dict[str, Any]) -> None:
        now, platform = time.time(), target.platform
        if platform.sign_url is not None:
            content, headers = platform.sign_url(target.secret, body, now, target.signed_url)
        else:
            content, headers = platform.sign(target.secret, body, now)
        try:
            response = self.client.post(target.url, content=content, headers=headers)
        except httpx.HTTPError:
            self.tracker.update(_connection_error)
            return
        self.tracker.update(lambda progress: _record_response(progress, response))


def play_gaps(moments: list[datetime], play_s: float) -> list[float]:
    """Seconds to wait before each event: the call's real gaps squeezed into about `play_s`."""
    if not moments:
        return []
    real = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(moments)]
    total = sum(real) or 1.0
    return [0.0] + [play_s * (0.25 / len(real) + 0.75 * gap / total) for gap in real]


def _record_response(progress: Progress, response: httpx.Response) -> None:
    progress.sent += 1
    if not response.is_success:
        progress.rejected[response.status_code] = progress.rejected.get(response.status_code, 0) + 1
    elif _is_duplicate(response):
        progress.duplicates += 1
    else:
        progress.accepted += 1


def _is_duplicate(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("status") == "duplicate"


def _connection_error(progress: Progress) -> None:
    progress.sent += 1
    progress.errors += 1


def _call_started(progress: Progress) -> None:
    progress.calls_started += 1


def _call_done(progress: Progress) -> None:
    progress.calls_done += 1
