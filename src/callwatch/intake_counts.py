"""Webhook intake counted in the web process, by provider and outcome, for `GET /metrics`."""

import functools
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from callwatch.errors import RequestError, StoreUnavailable
from callwatch.services import Services

Endpoint = Callable[[Request], Awaitable[Response]]
OUTCOMES = ("accepted", "duplicate", "rejected", "unavailable", "error")


def counts_of(app: Any) -> Counter[tuple[str, str]]:
    """This app's (provider, outcome) → webhook requests, since it started."""
    counts: Counter[tuple[str, str]] | None = getattr(app.state, "intake_counts", None)
    if counts is None:
        counts = app.state.intake_counts = Counter()
    return counts


def outcome_of(response: Response) -> str:
    if response.status_code != 202:
        return "rejected" if response.status_code < 500 else "error"
    try:
        status = json.loads(bytes(response.body)).get("status")
    except (ValueError, AttributeError):
        return "accepted"
    return "duplicate" if status == "duplicate" else "accepted"


async def _provider(request: Request) -> str:
    """The provider of the request's source (a cache hit: the endpoint has just looked it up)."""
    services: Services = request.app.state.services
    try:
        source = await services.sources.lookup(request.path_params.get("webhook_token", ""))
    except Exception:
        return "unknown"
    return source.provider if source is not None else "unknown"


def counted(endpoint: Endpoint) -> Endpoint:
    """The webhook endpoint, counting each request's outcome under its source's provider."""

    @functools.wraps(endpoint)
    async def counting(request: Request) -> Response:
        try:
            response = await endpoint(request)
        except RequestError:
            counts_of(request.app)[(await _provider(request), "rejected")] += 1
            raise
        except StoreUnavailable:  # no second look-up while the database is down
            counts_of(request.app)[("unknown", "unavailable")] += 1
            raise
        except Exception:
            counts_of(request.app)[("unknown", "error")] += 1
            raise
        counts_of(request.app)[(await _provider(request), outcome_of(response))] += 1
        return response

    return counting
