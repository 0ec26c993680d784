"""Webhook intake counted in the web process, by provider and outcome, for `GET /metrics`."""

import functools
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from callwatch.errors import RequestError, StoreUnavailable

Endpoint = Callable[[Request], Awaitable[Response]]
OUTCOMES = ("accepted", "duplicate", "rejected", "unavailable", "error")


def counts_of(app: Any) -> Counter[tuple[str, str]]:
    """This app's (provider, outcome) → webhook requests, since it started."""
    counts: Counter[tuple[str, str]] | None = getattr(app.state, "intake_counts", None)
    if counts is None:
        counts = app.state.intake_counts = Counter()
    return counts


# What the endpoint notes in the request's scope as it goes, so counting costs no second look-up.
PROVIDER = "callwatch.provider"
OUTCOME = "callwatch.outcome"


def counted(endpoint: Endpoint) -> Endpoint:
    """The webhook endpoint, counting each request's outcome under its source's provider."""

    @functools.wraps(endpoint)
    async def counting(request: Request) -> Response:
        outcome = "error"
        try:
            response = await endpoint(request)
            outcome = request.scope.get(OUTCOME, "accepted")
            return response
        except RequestError:
            outcome = "rejected"
            raise
        except StoreUnavailable:
            outcome = "unavailable"
            raise
        finally:
            counts_of(request.app)[(request.scope.get(PROVIDER, "unknown"), outcome)] += 1

    return counting
