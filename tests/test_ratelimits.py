"""Shared token buckets in a real Redis: taken directly (workers) or in leases (receivers)."""

import asyncio
import socket
import uuid

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callwatch.errors import TooManyRequests
from callwatch.ratelimits import Buckets, Leases, RateLimit, bucket_key

# Refills one token per 1,000 s: within a test the burst is all a bucket gives.
SLOW = 0.001


def fresh_key() -> str:
    return bucket_key("test", uuid.uuid4().hex)


async def admitted(leases: Leases, key: str, burst: int) -> bool:
    try:
        await leases.admit(key, SLOW, burst)
    except TooManyRequests:
        return False
    return True


def test_a_limit_without_a_burst_allows_one_seconds_worth() -> None:
    assert RateLimit(per_second=2.5).model_dump() == {"per_second": 2.5, "burst": 3}
    assert RateLimit(per_second=0.1).model_dump() == {"per_second": 0.1, "burst": 1}


def test_buckets_grant_up_to_the_burst_then_say_when_a_token_comes(redis_url: str) -> None:
    buckets = Buckets(redis.Redis.from_url(redis_url))
    key = fresh_key()
    assert buckets.take(key, 10.0, 3, want=5) == (3, 0.0)
    granted, wait_s = buckets.take(key, 10.0, 3)
    assert granted == 0
    assert 0 < wait_s <= 0.1


def test_buckets_refill_at_the_rate(redis_url: str) -> None:
    buckets = Buckets(redis.Redis.from_url(redis_url))
    key = fresh_key()
    assert buckets.take(key, 100.0, 2, want=2) == (2, 0.0)
    asyncio.run(asyncio.sleep(0.05))  # 5 tokens' worth, capped at the burst of 2
    assert buckets.take(key, 100.0, 2, want=5) == (2, 0.0)


def test_leases_refuse_past_the_burst_with_seconds_to_wait(redis_url: str) -> None:
    async def run() -> tuple[list[bool], int]:
        async with redis.asyncio.Redis.from_url(redis_url) as client:
            leases, key = Leases(client), fresh_key()
            passed = [await admitted(leases, key, 4) for _ in range(6)]
            with pytest.raises(TooManyRequests) as refused:
                await leases.admit(key, SLOW, 4)
            return passed, refused.value.retry_after

    passed, retry_after = asyncio.run(run())
    assert passed == [True] * 4 + [False] * 2
    assert 999 <= retry_after <= 1000


def test_a_refusal_is_kept_without_asking_redis_again(redis_url: str) -> None:
    async def run() -> list[bool]:
        async with redis.asyncio.Redis.from_url(redis_url) as client:
            leases, key = Leases(client), fresh_key()
            first = [await admitted(leases, key, 1) for _ in range(2)]
            await client.delete(key)  # a full bucket again, if the lease asked
            return [*first, await admitted(leases, key, 1)]

    assert asyncio.run(run()) == [True, False, False]


def test_without_redis_requests_pass_and_are_counted() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

    async def run() -> tuple[list[bool], int]:
        async with redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{port}") as client:
            leases, key = Leases(client), fresh_key()
            return [await admitted(leases, key, 1) for _ in range(3)], leases.unavailable

    passed, unavailable = asyncio.run(run())
    assert passed == [True, True, True]
    assert unavailable >= 1


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    burst=st.integers(1, 40),
    turns=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 8)), min_size=1, max_size=12),
)
def test_processes_together_admit_the_burst_no_more_no_less(
    redis_url: str, burst: int, turns: list[tuple[int, int]]
) -> None:
    """Three processes' leases, in any order and concurrency, never pass the burst; once each
    has spent what it leased, they have admitted exactly the burst: no token made or lost."""

    async def run() -> tuple[int, int]:
        async with redis.asyncio.Redis.from_url(redis_url) as client:
            processes, key = [Leases(client) for _ in range(3)], fresh_key()
            passed = 0
            for process, at_once in turns:
                wave = [admitted(processes[process], key, burst) for _ in range(at_once)]
                passed += sum(await asyncio.gather(*wave))
            drained = passed
            for leases in processes:
                while await admitted(leases, key, burst):
                    drained += 1
            return passed, drained

    passed, drained = asyncio.run(run())
    assert passed <= burst
    assert drained == burst
