"""Each source's webhook traffic over the chosen window, for `/` and `/sources`: when it last
sent, how many webhooks were accepted and refused (intake.activity, from Redis), and its backlog
(events stored, not yet applied: the inbox)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from redis import RedisError
from starlette.requests import Request

from callwatch.db import transaction
from callwatch.intake import activity, inbox
from callwatch.runtime import Runtime

WINDOWS = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}


def chosen_window(request: Request) -> str:
    window = request.query_params.get("window", "24h")
    return window if window in WINDOWS else "24h"


@dataclass(frozen=True)
class Traffic:
    """One source's webhooks in the window, and its backlog now."""

    last_at: datetime | None = None
    accepted: int = 0
    refused: int = 0
    limited: int = 0
    backlog: int = 0


@dataclass(frozen=True)
class Board:
    """Every source's traffic; `counted` False when Redis could not be read (counts unknown,
    shown as such: the page renders all the same)."""

    rows: dict[str, Traffic]
    counted: bool

    def of(self, source_id: str) -> Traffic:
        return self.rows.get(source_id, Traffic())


def board(runtime: Runtime, org_id: str, since: datetime, until: datetime) -> Board:
    with transaction(runtime.sessions) as session:
        backlog = inbox.backlog(session, org_id)
    seen: dict[str, activity.SourceActivity] = {}
    counted = runtime.redis is not None
    try:
        if runtime.redis is not None:
            seen = activity.read(runtime.redis, org_id, since, until)
    except RedisError:
        counted = False
    rows = {}
    for source_id in set(seen) | set(backlog):
        found = seen.get(source_id, activity.SourceActivity())
        rows[source_id] = Traffic(
            last_at=found.last_at,
            accepted=found.accepted,
            refused=found.refused,
            limited=found.limited,
            backlog=backlog.get(source_id, 0),
        )
    return Board(rows, counted)
