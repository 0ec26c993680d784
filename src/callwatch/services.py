"""What the web process holds for its lifetime: runtime, inbox writer, producer, source cache."""

import time
from dataclasses import dataclass, field

import redis
from starlette.concurrency import run_in_threadpool

from callwatch import tenancy
from callwatch.db import transaction
from callwatch.inbox import GroupWriter
from callwatch.providers.base import SourceConfig
from callwatch.queue import Producer
from callwatch.runtime import Runtime


@dataclass
class SourceCache:
    """Webhook token → source, kept briefly so intake does not read the database per request."""

    runtime: Runtime
    ttl_s: float
    _entries: dict[str, tuple[float, SourceConfig | None]] = field(default_factory=dict)

    async def lookup(self, token: str) -> SourceConfig | None:
        hit = self._entries.get(token)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        source = await run_in_threadpool(self._load, token)
        self._entries[token] = (now + self.ttl_s, source)
        return source

    def _load(self, token: str) -> SourceConfig | None:
        with transaction(self.runtime.sessions) as session:
            return tenancy.source_by_token(session, self.runtime.vault, token)


@dataclass
class Services:
    runtime: Runtime
    admin_token: str
    writer: GroupWriter
    producer: Producer
    sources: SourceCache
    redis: redis.Redis
