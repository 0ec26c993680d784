"""`GET /metrics`, `/healthz` and `/readyz`.

`/metrics`: this process, its webhook intake, the database and Redis read at each scrape
(observability/collector.py).

Ready means webhooks can be stored now: the database answers, intake's last batch was stored
(or it can connect again), and Redis answers. Each check is bounded, so the probe answers while
the database hangs (`probe.Probe`).
"""

import asyncio

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callwatch.observability.collector import registry_of
from callwatch.web.operations import Operation
from callwatch.web.problems import problem
from callwatch.web.services import Services


def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    registry = registry_of(request.app, services.runtime)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)


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
