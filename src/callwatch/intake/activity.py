"""Each source's webhook activity, for the dashboard: when it last sent, and how many of its
webhooks were accepted and refused, per hour and per day, in Redis.

The receiver pays no Redis round trip per webhook (it is tuned: bench/ab.py): `Tally.note` adds
to a dict in this process (counts.Counted calls it as it counts outcomes for /metrics), and
`Flusher` writes what was noted to Redis at most once a second, in one pipeline, dated by the
flush: HINCRBY into the hour's and the day's hash of the org (`{source_id}:{outcome}` fields,
kept `KEEP_S`), and ZADD GT of the time into the org's last-webhook set. A flush that fails is
kept and tried again next second; what a process noted in its last second before it is killed
is lost (these are counts to look at, not the inbox). A webhook whose token names no live source
(404, 410) is nobody's activity.

`read` answers a window in whole hours: its hours up to the first midnight, whole days, then
the hours since the last midnight — at most 23 + 90 + 24 hashes for 90 days.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio

log = logging.getLogger("callwatch.activity")

FLUSH_S = 1.0
KEEP_S = 92 * 86400  # the longest window (90 d), its first day, and a day's slack
PREFIX = "callwatch:activity:"
ACCEPTED = ("accepted", "duplicate")  # 202
LIMITED = "limited"  # 429, of the refused


def hour_key(org_id: str, hour: int) -> str:
    return f"{PREFIX}{org_id}:h:{hour}"


def day_key(org_id: str, day: int) -> str:
    return f"{PREFIX}{org_id}:d:{day}"


def last_key(org_id: str) -> str:
    return f"{PREFIX}{org_id}:last"


class Tally:
    """This process's webhooks per ((org, source), outcome) since the last flush. No clock per
    webhook: a flush dates what it writes (its hour, each source's last webhook), at most
    `FLUSH_S` late."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[tuple[str, str], str]] = Counter()

    def note(self, owner: tuple[str, str], outcome: str) -> None:
        """One webhook of `owner` (org id, source id) answered with `outcome`."""
        self.counts[(owner, outcome)] += 1

    def take(self) -> Counter[tuple[tuple[str, str], str]]:
        """What was noted so far, leaving this tally empty."""
        taken, self.counts = self.counts, Counter()
        return taken

    def put_back(self, taken: Counter[tuple[tuple[str, str], str]]) -> None:
        """A flush that failed: its counts join what was noted since (dated by the next)."""
        self.counts.update(taken)


def tally_of(app: Any) -> Tally:
    """This app's tally (one per web process)."""
    tally: Tally | None = getattr(app.state, "source_activity", None)
    if tally is None:
        tally = app.state.source_activity = Tally()
    return tally


def write(pipe: Any, taken: Counter[tuple[tuple[str, str], str]], at: float) -> None:
    """Queue `taken`, dated `at` (epoch seconds), onto a Redis pipeline (sync or asyncio)."""
    hour = int(at // 3600)
    touched: set[str] = set()
    for ((org_id, source_id), outcome), count in taken.items():
        counted = (hour_key(org_id, hour), day_key(org_id, hour // 24))
        for key in counted:
            pipe.hincrby(key, f"{source_id}:{outcome}", count)
        pipe.zadd(last_key(org_id), {source_id: at}, gt=True)
        touched.update((*counted, last_key(org_id)))
    for key in sorted(touched):
        pipe.expire(key, KEEP_S)


class Flusher:
    """Writes a tally to Redis every `FLUSH_S` while running (the web process's lifespan)."""

    def __init__(self, tally: Tally, client: redis.asyncio.Redis) -> None:
        self.tally = tally
        self._client = client
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop, writing what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.flush()

    async def flush(self) -> None:
        if not self.tally.counts:
            return
        taken = self.tally.take()
        try:
            pipe = self._client.pipeline(transaction=False)
            write(pipe, taken, time.time())
            await asyncio.wait_for(pipe.execute(), FLUSH_S)
        except (redis.RedisError, OSError, TimeoutError):
            if self.failures == 0:
                log.warning("source activity not written: Redis did not answer; kept for later")
            self.failures += 1
            self.tally.put_back(taken)


@dataclass(frozen=True)
class SourceActivity:
    """A source's webhooks in a window: accepted (202, duplicates too), refused (any other
    answer: 4xx, 429, 503), of which `limited` (429); and when it last sent one, ever."""

    last_at: datetime | None = None
    accepted: int = 0
    refused: int = 0
    limited: int = 0


def window_keys(org_id: str, since: float, until: float) -> list[str]:
    """The hashes that tile [since, until] in whole hours: hours up to a midnight, days, hours."""
    first, last = int(since // 3600), int(until // 3600)
    keys, hour = [], first
    while hour <= last:
        if hour % 24 == 0 and hour + 23 <= last:
            keys.append(day_key(org_id, hour // 24))
            hour += 24
        else:
            keys.append(hour_key(org_id, hour))
            hour += 1
    return keys


def read(
    client: redis.Redis, org_id: str, since: datetime, until: datetime
) -> dict[str, SourceActivity]:
    """Each source's activity in the window, by source id (sources never seen left out)."""
    pipe = client.pipeline(transaction=False)
    for key in window_keys(org_id, since.timestamp(), until.timestamp()):
        pipe.hgetall(key)
    pipe.zrange(last_key(org_id), 0, -1, withscores=True)
    *hashes, latest = pipe.execute()
    by_source: dict[str, Counter[str]] = {}
    for found in hashes:
        for field, count in found.items():
            source_id, _, outcome = field.decode().rpartition(":")
            by_source.setdefault(source_id, Counter())[outcome] += int(count)
    last_at = {member.decode(): at for member, at in latest}
    result = {}
    for source_id in set(by_source) | set(last_at):
        counts = by_source.get(source_id, Counter())
        accepted = sum(counts[outcome] for outcome in ACCEPTED)
        at = last_at.get(source_id)
        result[source_id] = SourceActivity(
            last_at=datetime.fromtimestamp(at, UTC) if at is not None else None,
            accepted=accepted,
            refused=counts.total() - accepted,
            limited=counts[LIMITED],
        )
    return result
