"""A platform's webhook sender: signs each webhook once and retries it as platforms do.

A 5xx, a 429, a timeout or a connection error → the same bytes again (same `webhook-id`, same
signature) after a jittered backoff, for at most RETRY_FOR_S; any other 4xx is final. Every
attempt is kept: its status (None for a timeout or connection error), its latency and what
went wrong, so the ledger can be checked against the database afterwards.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from callwatch.simulator import DetailServer, Platform, make_call
from callwatch.simulator.runner import play_gaps

# The reply deadline the suite holds the receiver to: a 202 or a 503 within this, whatever
# is down (the issue asks for a 503 within 1 s; the rest is room for a loaded 2-core runner).
DEADLINE_S = 2.0
CLIENT_TIMEOUT_S = 5.0  # what the sender waits before it gives up on an attempt and retries
RETRY_FOR_S = 60.0  # then it gives up on the webhook (counted: the ledger wants 0)
BACKOFF_S = (0.1, 2.0)  # first and longest pause between attempts


@dataclass
class Attempt:
    started: float  # time.monotonic()
    latency_s: float
    status: int | None  # None: no reply (timeout or connection error)
    error: str = ""
    retry_after: str | None = None


@dataclass
class Webhook:
    platform: str
    call_id: str  # the platform's id for the call
    content: bytes
    headers: dict[str, str]
    url: str
    attempts: list[Attempt] = field(default_factory=list)
    reply: dict[str, Any] | None = None  # the 202's JSON body

    @property
    def final_status(self) -> int | None:
        return self.attempts[-1].status if self.attempts else None

    @property
    def events(self) -> list[str]:
        return list((self.reply or {}).get("events") or [])

    @property
    def lost_reply(self) -> bool:
        """Whether an attempt before the last went unanswered or failed: it may have been stored."""
        return any(attempt.status != 202 for attempt in self.attempts[:-1])


@dataclass(frozen=True)
class Target:
    """Where one platform's webhooks go, and what it signs them with."""

    name: str
    platform: Platform
    url: str
    secret: str


@dataclass
class Played:
    platform: str
    call_id: str  # the platform's id for the call
    webhooks: list[Webhook]
    sim_id: str = ""  # the simulator's id, which some platforms' webhooks carry instead

    @property
    def ids(self) -> set[str]:
        """The ids its record may be stored under."""
        return {self.call_id, self.sim_id} - {""}


def sign(target: Target, body: dict[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
    if target.platform.sign_url is not None:
        return target.platform.sign_url(target.secret, body, now, target.url)
    return target.platform.sign(target.secret, body, now)


def plan_calls(
    targets: list[Target], per_platform: int, seed: int, details: DetailServer
) -> list[tuple[Target, Any]]:
    """`per_platform` simulated calls for every target, interleaved, each served by `details`."""
    rng = random.Random(seed)
    planned = []
    for _ in range(per_platform):
        for target in targets:
            call = make_call(rng, datetime.now(UTC), recording_base=details.url)
            details.add(call, recording_after_s=rng.uniform(0.2, 2.0))
            planned.append((target, call))
    return planned


class Sender:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.played: list[Played] = []

    async def play(
        self, planned: list[tuple[Target, Any]], rate: float, play_s: float, concurrency: int
    ) -> None:
        """Start call n at n / `rate` s, at most `concurrency` at once; each call's webhooks
        in order over about `play_s` s, each retried until answered."""
        slots = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(
            max_connections=concurrency * 2, max_keepalive_connections=concurrency
        )
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, limits=limits) as client:
            began = time.monotonic()
            tasks = []
            for index, (target, call) in enumerate(planned):
                await asyncio.sleep(max(0.0, began + index / rate - time.monotonic()))
                await slots.acquire()
                task = asyncio.create_task(self._call(client, target, call, play_s))
                task.add_done_callback(lambda _: slots.release())
                tasks.append(task)
            await asyncio.gather(*tasks)

    async def _call(
        self, client: httpx.AsyncClient, target: Target, call: Any, play_s: float
    ) -> None:
        timed = target.platform.webhooks(call, False)
        gaps = play_gaps([at for at, _ in timed], play_s)
        played = Played(target.name, target.platform.call_id(call), [], call.call_id)
        self.played.append(played)
        for pause, (_, body) in zip(gaps, timed, strict=True):
            await asyncio.sleep(pause)
            content, headers = sign(target, body, time.time())
            webhook = Webhook(target.name, played.call_id, content, headers, target.url)
            played.webhooks.append(webhook)
            await self._deliver(client, webhook)

    async def _deliver(self, client: httpx.AsyncClient, webhook: Webhook) -> None:
        first = time.monotonic()
        pause = BACKOFF_S[0]
        while True:
            started = time.monotonic()
            try:
                response = await client.post(
                    webhook.url, content=webhook.content, headers=webhook.headers
                )
            except httpx.TimeoutException as exc:
                attempt = Attempt(started, time.monotonic() - started, None, type(exc).__name__)
            except httpx.TransportError as exc:
                attempt = Attempt(started, time.monotonic() - started, None, type(exc).__name__)
            else:
                attempt = Attempt(
                    started,
                    time.monotonic() - started,
                    response.status_code,
                    retry_after=response.headers.get("retry-after"),
                )
                if response.status_code == 202:
                    webhook.attempts.append(attempt)
                    webhook.reply = response.json()
                    return
                attempt.error = response.text[:300]
            webhook.attempts.append(attempt)
            retryable = attempt.status is None or attempt.status >= 500 or attempt.status == 429
            if not retryable or time.monotonic() - first > RETRY_FOR_S:
                return
            await asyncio.sleep(pause * self.rng.uniform(0.5, 1.5))
            pause = min(BACKOFF_S[1], pause * 2)


def summary(played: list[Played]) -> dict[str, Any]:
    webhooks = [webhook for call in played for webhook in call.webhooks]
    attempts = [attempt for webhook in webhooks for attempt in webhook.attempts]
    statuses: dict[str, int] = {}
    for attempt in attempts:
        key = str(attempt.status) if attempt.status is not None else attempt.error or "no reply"
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "calls": len(played),
        "webhooks": len(webhooks),
        "attempts": len(attempts),
        "by_status": dict(sorted(statuses.items())),
        "slowest_reply_s": round(max((a.latency_s for a in attempts), default=0.0), 3),
    }


def describe(webhook: Webhook) -> str:
    body = webhook.content[:200].decode(errors="replace")
    tries = [(a.status, a.error[:80], round(a.latency_s, 3)) for a in webhook.attempts]
    return f"{webhook.platform} {webhook.call_id}: {tries} body {json.dumps(body)}"
