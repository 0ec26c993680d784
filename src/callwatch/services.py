"""What the web process holds for its lifetime: runtime, inbox writer, producer, source cache."""

import asyncio
import time
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from callwatch import tenancy
from callwatch.db import transaction
from callwatch.inbox_client import InboxClient
from callwatch.providers.base import SourceConfig
from callwatch.queue import Producer
from callwatch.runtime import Runtime


@dataclass
class SourceCache:
    """Webhook token → source, kept briefly so intake does not read the database per request."""

    runtime: Runtime
    ttl_s: float
    _entries: dict[str, tuple[float, SourceConfig | None]] = field(default_factory=dict)
    _loading: dict[str, asyncio.Future[SourceConfig | None]] = field(default_factory=dict)

    async def lookup(self, token: str) -> SourceConfig | None:
        hit = self._entries.get(token)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        # One load per token at a time: a burst on a cold cache must not become a burst of queries.
        loading = self._loading.get(token)
        if loading is not None:
            return await asyncio.shield(loading)
        loading = self._loading[token] = asyncio.get_running_loop().create_future()
        try:
            source = await run_in_threadpool(self._load, token)
            self._entries[token] = (now + self.ttl_s, source)
            loading.set_result(source)
        except Exception as exc:
            loading.set_exception(exc)
            loading.exception()  # retrieved here, so an unawaited failure is not reported
            raise
        finally:
            del self._loading[token]
            if not loading.done():  # the loading request was cancelled
                loading.cancel()
        return source

    def _load(self, token: str) -> SourceConfig | None:
        with transaction(self.runtime.sessions) as session:
            return tenancy.source_by_token(session, self.runtime.vault, token)


@dataclass
class Services:
    runtime: Runtime
    admin_token: str
    inbox: InboxClient
    producer: Producer
    sources: SourceCache
