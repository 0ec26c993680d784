"""Liveness and readiness probes.

Ready means webhooks can be stored now: the database answers, intake's last batch was stored
(or it can connect again), and Redis answers. Each check is bounded, so the probe answers while
the database hangs (`probe.Probe`).
"""

import asyncio

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callwatch.problems import problem
from callwatch.services import Services


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
