"""Liveness and readiness probes.

Ready means webhooks can be stored now: the database answers, intake's last batch was stored
(or it can connect again), and Redis answers. Each check is bounded, so the probe answers while
the database hangs.
"""

import asyncio

from pydantic import BaseModel
from sqlalchemy import text
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
    timeout_s = max(1.0, services.runtime.settings.intake_deadline_s)
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(asyncio.to_thread(_select_1, services), timeout_s)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    storing = await services.intake.can_store()
    checks["intake"] = "ok" if storing == "ok" else f"cannot store: {storing}"
    try:
        await asyncio.wait_for(asyncio.to_thread(services.producer.ping), timeout_s)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    if all(value == "ok" for value in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    return problem(503, "Not ready", "a dependency is unreachable", checks=checks)


def _select_1(services: Services) -> None:
    with services.runtime.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
