"""Each source's webhook activity, for the dashboard: when it last sent, and how many of its
webhooks were accepted and refused, per hour and per day, in Redis.

The receiver pays no Redis round trip per webhook (it is tuned: bench/ab.py): `Tally.note` adds
to a dict in this process (counts.Counted calls it as it counts outcomes for /metrics), and
`Flusher` writes what was noted to Redis at most once a second, in one pipeline: HINCRBY into
the hour's and the day's hash of the org (`{source_id}:{outcome}` fields, kept `KEEP_S`), and
ZADD GT of the time into the org's last-webhook set. A flush that fails is kept and tried again
next second; what a process noted in its last second before it is killed is lost (these are
counts to look at, not the inbox). A webhook whose token names no live source (404, 410) is
nobody's activity.

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
    """This process's webhooks per (org, source, hour, outcome), and each source's latest time,
    since the last flush."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, int, str]] = Counter()
        self.last: dict[tuple[str, str], float] = {}

    def note(self, org_id: str, source_id: str, outcome: str) -> None:
        now = time.time()
        self.counts[(org_id, source_id, int(now // 3600), outcome)] += 1
        self.last[(org_id, source_id)] = now

    def take(self) -> "Tally":
        """What was noted so far, leaving this tally empty."""
        taken = Tally()
        taken.counts, self.counts = self.counts, Counter()
        taken.last, self.last = self.last, {}
        return taken

    def put_back(self, taken: "Tally") -> None:
        """A flush that failed: its counts join what was noted since."""
        self.counts.update(taken.counts)
        for key, at in taken.last.items():
            self.last[key] = max(at, self.last.get(key, at))


def tally_of(app: Any) -> Tally:
    """This app's tally (one per web process)."""
    tally: Tally | None = getattr(app.state, "source_activity", None)
    if tally is None:
        tally = app.state.source_activity = Tally()
    return tally


def write(pipe: Any, taken: Tally) -> None:
    """Queue `taken` onto a Redis pipeline (sync or asyncio alike)."""
    touched: set[str] = set()
    for (org_id, source_id, hour, outcome), count in taken.counts.items():
        field = f"{source_id}:{outcome}"
        for key in (hour_key(org_id, hour), day_key(org_id, hour // 24)):
            pipe.hincrby(key, field, count)
            touched.add(key)
    for (org_id, source_id), at in taken.last.items():
        pipe.zadd(last_key(org_id), {source_id: at}, gt=True)
        touched.add(last_key(org_id))
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
        if not self.tally.counts and not self.tally.last:
            return
        taken = self.tally.take()
        try:
            pipe = self._client.pipeline(transaction=False)
            write(pipe, taken)
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
