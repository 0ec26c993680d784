"""The resources of one process (engine, sessions, vault, HTTP client), created once at start."""

import logging
import random
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from redis import Redis, RedisError
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from callwatch.crypto import Vault
from callwatch.db import make_engine, make_sessionmaker
from callwatch.outbound import ssrf
from callwatch.settings import Settings

log = logging.getLogger("callwatch.runtime")

# A hash of counters every process adds to (`Runtime.count`) and `GET /metrics` reads: the
# database and Redis are what web and workers share.
COUNTERS = "callwatch:counters"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _persisted(path: Path, make: Callable[[], str]) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def secret_key(settings: Settings) -> str:
    """CALLWATCH_SECRET_KEY, else a key generated once into the data dir."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    return _persisted(settings.data_dir / "secret_key", lambda: secrets.token_urlsafe(32))


def admin_token(settings: Settings) -> str:
    """CALLWATCH_ADMIN_TOKEN, else a token generated once into the data dir."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    return _persisted(settings.data_dir / "admin_token", lambda: "adm_" + secrets.token_urlsafe(24))


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    vault: Vault
    # Platform APIs (detail fetches): through the SSRF guard, never following redirects; each
    # fetch inside http.bounded().
    http: httpx.Client
    # Subscriber deliveries: through the same guard, never following redirects.
    outbound: httpx.Client
    # The threads a batch of deliveries is sent on (started only when a batch is sent).
    senders: ThreadPoolExecutor
    # Ops streams; None where no Redis is configured (a CLI command on the database alone).
    redis: Redis | None = None
    clock: Callable[[], datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def start(cls, settings: Settings) -> "Runtime":
        if settings.database_url.startswith("sqlite:///./"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            vault=Vault(secret_key(settings)),
            http=ssrf.fetch_client(settings),
            outbound=ssrf.client(settings),
            senders=ThreadPoolExecutor(settings.delivery_concurrency, "callwatch-send"),
            redis=Redis.from_url(settings.redis_url) if settings.redis_url else None,
        )

    def count(self, counts: dict[str, int]) -> None:
        """Add to the shared counters (COUNTERS) in one round trip. Best effort: a count lost
        to a Redis outage is logged, what was counted stands."""
        if self.redis is None or not any(counts.values()):
            return
        pipe = self.redis.pipeline(transaction=False)
        for name, value in counts.items():
            if value:
                pipe.hincrby(COUNTERS, name, value)
        try:
            pipe.execute()
        except RedisError as exc:
            log.warning("not counted", extra={"error": type(exc).__name__, **counts})

    def close(self) -> None:
        self.http.close()
        self.senders.shutdown()
        self.outbound.close()
        if self.redis is not None:
            self.redis.close()
        self.engine.dispose()


@contextmanager
def opened(settings: Settings) -> Iterator[Runtime]:
    """A runtime for a block of work outside the long-running processes."""
    resources = Runtime.start(settings)
    try:
        yield resources
    finally:
        resources.close()
