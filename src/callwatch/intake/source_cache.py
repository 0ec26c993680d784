"""Intake's webhook token → source cache: a miss is read once, on a worker thread, in time."""

import asyncio
import time

from sqlalchemy.orm import Session, sessionmaker

from callwatch.crypto import Vault
from callwatch.db import transaction
from callwatch.errors import Gone, NotFound, StoreUnavailable
from callwatch.orgs import tenancy
from callwatch.providers.base import SourceConfig


class Sources:
    """Webhook token → source, kept for `ttl_s`; a miss is read on a worker thread, once.

    Unknown tokens are kept too (as None), so at most `limit` entries: a scan of random tokens
    must not grow the cache without bound. A change to a source (disabled, deleted, a token
    rotated) reaches another process within `ttl_s`, this one at once (`forget`); a previous
    token is never kept past the end of its overlap.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        vault: Vault,
        ttl_s: float,
        limit: int = 10_000,
        *,
        deadline_s: float | None = None,
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self._ttl_s = ttl_s
        self._limit = limit
        self._deadline_s = deadline_s  # a read that takes longer is StoreUnavailable
        self._entries: dict[str, tuple[float, SourceConfig | None]] = {}
        self._loading: dict[str, asyncio.Future[SourceConfig | None]] = {}

    async def lookup(self, token: str) -> SourceConfig:
        """The token's source (raises NotFound, or StoreUnavailable)."""
        loop = asyncio.get_running_loop()
        hit = self._entries.get(token)
        if hit is not None and hit[0] > loop.time():
            source = hit[1]
        else:
            loading = self._loading.get(token)
            if loading is None:
                loading = self._loading[token] = asyncio.ensure_future(self._load(token))
                loading.add_done_callback(lambda _: self._loading.pop(token, None))
            try:
                source = await asyncio.wait_for(asyncio.shield(loading), self._deadline_s)
            except TimeoutError:
                raise StoreUnavailable(
                    "database unavailable: the source was not read in time"
                ) from None
        if source is None or source.deleted:
            raise NotFound("unknown webhook token")
        if not source.enabled:
            raise Gone("this source is disabled; enable it to receive webhooks again")
        return source

    def forget(self) -> None:
        """Drop every entry: a source was changed through this process."""
        self._entries.clear()

    async def _load(self, token: str) -> SourceConfig | None:
        source = await asyncio.to_thread(self._read, token)
        ttl_s = self._ttl_s
        if source is not None and source.token_until is not None:
            ttl_s = min(ttl_s, source.token_until - time.time())
        if ttl_s > 0:
            if len(self._entries) >= self._limit:
                self._entries.clear()
            self._entries[token] = (asyncio.get_running_loop().time() + ttl_s, source)
        return source

    def _read(self, token: str) -> SourceConfig | None:
        with transaction(self._sessions) as session:
            return tenancy.source_by_token(session, self._vault, token)
