"""Rate limits shared by every process: token buckets in Redis, taken in leases.

A bucket holds up to `burst` tokens and refills at `per_second`; it lives in Redis, so every
receiver process and worker draws on the same one. One Lua script refills and takes atomically,
on Redis's clock.

The receiver does not ask Redis per webhook (the receiver may spend 5 % on limits, and a
round trip is most of that; docs/decisions.md, "Rate limits"). It leases tokens, about what the
source used in the last `LEASE_S` (`_want` says how), and spends them locally. A lease unused
after `LEASE_MAX_AGE_S` lapses, so a process never holds tokens for long. Leased tokens were
taken from the bucket, so all processes together never pass `burst + per_second * t`. A refusal
is remembered until the bucket would have a token again, so a flood of refused requests costs
no Redis round trips either.

Redis unreachable: requests pass (a limit protects callwatch; losing Redis must not turn into
refusing webhooks the database could store), and `Leases.unavailable` counts it.
"""

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from callwatch.errors import TooManyRequests

log = logging.getLogger("callwatch.ratelimits")

LEASE_S = 0.1
LEASE_MAX_AGE_S = 1.0
# A lease not granted in time passes its requests, as when Redis is down.
REDIS_TIMEOUT_S = 0.1
MAX_RATE = 100_000.0

# KEYS[1] the bucket; ARGV rate, burst, want. Returns {granted, seconds until a token, as text}.
_TAKE = """
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait = 0
if granted == 0 then wait = (1 - tokens) / rate end
return {granted, tostring(wait)}
"""


class RateLimit(BaseModel):
    """At most `per_second` on average, and `burst` at once (default: one second's worth)."""

    model_config = ConfigDict(extra="forbid")

    per_second: float = Field(gt=0, le=MAX_RATE, description="the sustained rate")
    burst: int | None = Field(
        None, ge=1, le=int(MAX_RATE), description="at once; default: one second's worth"
    )

    @model_validator(mode="after")
    def _default_burst(self) -> "RateLimit":
        if self.burst is None:
            self.burst = max(1, math.ceil(self.per_second))
        return self


def bucket_key(kind: str, owner_id: str) -> str:
    return f"callwatch:ratelimit:{kind}:{owner_id}"


def _taken(reply: Any) -> tuple[int, float]:
    granted, wait = reply
    return int(granted), float(wait)


def retry_after(wait_s: float) -> int:
    """Whole seconds for a Retry-After header: HTTP has no fractions, and 0 means now."""
    return max(1, math.ceil(wait_s))


class Buckets:
    """Take tokens straight from Redis (a worker: one call per batch it sends)."""

    def __init__(self, client: redis.Redis) -> None:
        self._take = client.register_script(_TAKE)

    def take(self, key: str, per_second: float, burst: int, want: int = 1) -> tuple[int, float]:
        """(tokens granted, up to `want`; seconds until the next token when none was)."""
        return _taken(self._take(keys=[key], args=[per_second, burst, want]))


@dataclass
class _Lease:
    tokens: int  # left to spend
    size: int  # granted
    wanted: int  # asked for
    taken_at: float
    denied_until: float = 0.0


class Leases:
    """Admit requests against shared buckets, spending leased tokens locally (the receiver)."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._take = client.register_script(_TAKE)
        self._leases: dict[str, _Lease] = {}
        self._fetching: dict[str, asyncio.Future[None]] = {}
        self.unavailable = 0  # leases granted without Redis, since it did not answer

    async def admit(self, key: str, per_second: float, burst: int) -> None:
        """Spend a token of `key`'s bucket, or raise TooManyRequests with when to retry."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            lease = self._leases.get(key)
            if lease is not None and now - lease.taken_at < LEASE_MAX_AGE_S:
                if lease.tokens > 0:
                    lease.tokens -= 1
                    return
                if lease.denied_until > now:
                    raise TooManyRequests(
                        "this source's rate limit is reached", retry_after(lease.denied_until - now)
                    )
            fetching = self._fetching.get(key)
            if fetching is None:
                lease_of = self._lease(key, per_second, burst)
                fetching = self._fetching[key] = asyncio.ensure_future(lease_of)
                fetching.add_done_callback(lambda _: self._fetching.pop(key, None))
            await asyncio.shield(fetching)

    async def _lease(self, key: str, per_second: float, burst: int) -> None:
        now = asyncio.get_running_loop().time()
        want = _want(self._leases.get(key), now, per_second, burst)
        try:
            reply = self._take(keys=[key], args=[per_second, burst, want])
            granted, wait_s = _taken(await asyncio.wait_for(reply, REDIS_TIMEOUT_S))
        except (redis.RedisError, OSError, TimeoutError):
            if self.unavailable == 0:
                log.warning("rate limits unavailable: Redis did not answer; requests pass")
            self.unavailable += 1
            granted, wait_s = want, 0.0
        denied_until = now + wait_s if granted == 0 else 0.0
        self._leases[key] = _Lease(granted, granted, want, now, denied_until)


def _want(lease: _Lease | None, now: float, per_second: float, burst: int) -> int:
    """The next lease's size: twice the last one's if that was spent within `LEASE_S`; after a
    lapse, what the last one served or half its size, whichever is more (a burst that paused
    comes back without starting from one); else what the last one served per `LEASE_S`. Never
    more than `LEASE_S` of the rate (a fair share between processes) or the burst."""
    most = min(burst, max(1, math.ceil(per_second * LEASE_S)))
    if lease is None:
        return 1
    elapsed = now - lease.taken_at
    used = lease.size - lease.tokens
    if lease.tokens == 0 and elapsed < LEASE_S:
        want = lease.wanted * 2
    elif elapsed >= LEASE_MAX_AGE_S:
        want = max(used, lease.wanted // 2)
    else:
        want = math.ceil(used * LEASE_S / max(elapsed, LEASE_S))
    return max(1, min(most, want))
