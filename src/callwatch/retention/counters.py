"""What the purge and erasures deleted, counted in Redis beside the workers' other counters
(`streams.COUNTERS`) for `/metrics`: `callwatch_purged_total{kind}` and
`callwatch_erased_calls_total`."""

import logging

from redis import Redis, RedisError

from callwatch.downstream.streams import COUNTERS

log = logging.getLogger("callwatch.retention")

PURGED = "purged|"  # + the kind (purge.Purged's fields)
ERASED_CALLS = "erased_calls"


def add(redis: Redis | None, counts: dict[str, int]) -> None:
    """Best effort: a count lost to a Redis outage is logged, the deletion stands."""
    if redis is None:
        return
    pipe = redis.pipeline(transaction=False)
    for name, value in counts.items():
        if value:
            pipe.hincrby(COUNTERS, name, value)
    try:
        pipe.execute()
    except RedisError as exc:
        log.warning("deletions not counted", extra={"error": str(exc), **counts})
