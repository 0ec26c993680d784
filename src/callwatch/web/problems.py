"""RFC 9457 problem+json responses: the one place errors become HTTP."""

import logging
from typing import Any

from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callwatch.errors import RequestError, StoreUnavailable, TooManyRequests
from callwatch.logs import redact_path

log = logging.getLogger("callwatch.web")


class Problem(BaseModel):
    """RFC 9457; `field` names the parameter or body field that is wrong."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    field: str | None = None


class ProblemResponse(JSONResponse):
    media_type = "application/problem+json"


# A problem may quote the input it refuses (a name, a field's path): never all of a huge one.
MAX_QUOTED = 500


def capped(text: str, limit: int = MAX_QUOTED) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> ProblemResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = capped(detail)
    body.update(
        {
            key: capped(value) if isinstance(value, str) else value
            for key, value in extra.items()
            if value is not None
        }
    )
    return ProblemResponse(body, status_code=status)


async def request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    response = problem(exc.status_code, exc.title, exc.detail, field=exc.field)
    if isinstance(exc, TooManyRequests):
        response.headers["retry-after"] = str(exc.retry_after)
    return response


async def store_unavailable(request: Request, exc: Exception) -> Response:
    log.error("database unavailable", extra={"path": redact_path(request.url.path)})
    response = problem(503, "Service unavailable", "the database is unreachable; retry later")
    response.headers["retry-after"] = "5"
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = problem(exc.status_code, exc.detail or "Error")
    response.headers.update(exc.headers or {})  # a 405's Allow
    return response


async def unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": redact_path(request.url.path)})
    return problem(500, "Internal server error", "an unexpected error was logged")


async def handle(request: Request, exc: Exception) -> Response:
    """The response of the handler for `exc`'s nearest class, as Starlette would choose it."""
    handler = next(HANDLERS[kind] for kind in type(exc).__mro__ if kind in HANDLERS)
    return await handler(request, exc)


HANDLERS = {
    RequestError: request_error,
    StoreUnavailable: store_unavailable,
    HTTPException: http_error,
    Exception: unexpected,
}
