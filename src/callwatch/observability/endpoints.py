"""`GET /metrics`, `/healthz` and `/readyz`.

`/metrics`: webhook intake of this process, the database and Redis, read at each scrape.

Ready means webhooks can be stored now: the database answers, intake's last batch was stored
(or it can connect again), and Redis answers. Each check is bounded, so the probe answers while
the database hangs (`probe.Probe`).
"""

import asyncio
import logging
from collections.abc import Mapping

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from callwatch.db import transaction
from callwatch.intake import counts as intake_counts
from callwatch.observability import scrape
from callwatch.observability.promtext import CONTENT_TYPE, Family, Sample, render
from callwatch.web.operations import Operation
from callwatch.web.problems import problem
from callwatch.web.services import Services

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


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    database, intake, redis = await asyncio.gather(
        services.probes.database(), services.intake.can_store(), services.probes.redis()
    )
    checks = {
        "database": database,
        "intake": "ok" if intake == "ok" else f"cannot store: {intake}",
        "redis": redis,
    }
    if all(value == "ok" for value in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    return problem(503, "Not ready", "a dependency is unreachable", checks=checks)


ENDPOINTS = [
    Operation(healthz, "get", "/healthz", "Liveness", "health", auth=None, response=Health),
    Operation(
        readyz,
        "get",
        "/readyz",
        "Readiness: the database, intake and Redis can serve",
        "health",
        auth=None,
        response=Readiness,
        errors=(503,),
    ),
    Operation(
        metrics,
        "get",
        "/metrics",
        "Prometheus metrics",
        "health",
        auth=None,
        response={"text/plain": "the Prometheus text exposition format"},
    ),
]
