"""Webhook intake counted in the web process, by provider and outcome, for `GET /metrics`."""

from collections import Counter
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from callwatch.errors import RequestError, StoreUnavailable

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


class Counted:
    """The webhook endpoint (an ASGI app), counting each request's outcome under its provider."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = "error"
        try:
            await self.app(scope, receive, send)
            outcome = scope.get(OUTCOME, "accepted")
        except RequestError:
            outcome = "rejected"
            raise
        except StoreUnavailable:
            outcome = "unavailable"
            raise
        finally:
            counts_of(scope["app"])[(scope.get(PROVIDER, "unknown"), outcome)] += 1
