"""`GET /metrics`: webhook intake of this process, the database and Redis, read at each scrape."""

import logging
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import PlainTextResponse

from callwatch import intake_counts, scrape
from callwatch.db import transaction
from callwatch.promtext import CONTENT_TYPE, Family, Sample, render
from callwatch.services import Services

log = logging.getLogger("callwatch.web")


def intake(counts: Mapping[tuple[str, str], int]) -> Family:
    return Family(
        "callwatch_webhooks_total",
        "counter",
        "Webhook requests this web process answered, by the source's provider and outcome.",
        [
            Sample(count, (("provider", provider), ("outcome", outcome)))
            for (provider, outcome), count in sorted(counts.items())
        ],
    )


def up(dependency: str, ok: bool) -> Sample:
    return Sample(1 if ok else 0, (("dependency", dependency),))


def metrics(request: Request) -> PlainTextResponse:
    services: Services = request.app.state.services
    rt = services.runtime
    families = [intake(intake_counts.counts_of(request.app))]
    reachable = []
    try:
        with transaction(rt.sessions) as session:
            families += scrape.database(session, rt.clock())
        reachable.append(up("database", True))
    except Exception as exc:
        log.warning("metrics: database unreachable", extra={"error": type(exc).__name__})
        reachable.append(up("database", False))
    try:
        if rt.redis is None:
            raise RuntimeError("no Redis configured")
        families += scrape.redis(rt.redis)
        reachable.append(up("redis", True))
    except Exception as exc:
        log.warning("metrics: Redis unreachable", extra={"error": type(exc).__name__})
        reachable.append(up("redis", False))
    families.append(
        Family(
            "callwatch_dependency_up",
            "gauge",
            "Whether this scrape could read the dependency (1) or not (0).",
            reachable,
        )
    )
    return PlainTextResponse(render(families), media_type=CONTENT_TYPE)
