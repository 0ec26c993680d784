"""Webhook intake counted in the web process, by provider and outcome, for `GET /metrics`, and
by source for the dashboard (`activity`); and, when tracing, each webhook request's server span
(the root of its trace).

A dict Counter, not prometheus-client's: its `labels(...).inc()` took 1.7 µs a request against
0.15 µs (two locks and a look-up), ~4 % of the web process's CPU per webhook; `/metrics` writes
these counts as a counter family through its collector (observability/collector.py).
"""

from collections import Counter
from typing import Any

from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Receive, Scope, Send

from callwatch import tracing
from callwatch.errors import RequestError, StoreUnavailable, TooManyRequests
from callwatch.intake.activity import tally_of

OUTCOMES = ("accepted", "duplicate", "rejected", "limited", "unavailable", "error")


def counts_of(app: Any) -> Counter[tuple[str, str]]:
    """This app's (provider, outcome) → webhook requests, since it started."""
    counts: Counter[tuple[str, str]] | None = getattr(app.state, "intake_counts", None)
    if counts is None:
        counts = app.state.intake_counts = Counter()
    return counts


# What the endpoint notes in the request's scope as it goes, so counting costs no second look-up.
PROVIDER = "callwatch.provider"
OUTCOME = "callwatch.outcome"
SOURCE = "callwatch.source"  # (org id, source id), once the token named a live source


class Counted:
    """The webhook endpoint (an ASGI app), counting each request's outcome under its provider."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not tracing.on():
            await self._counted(scope, receive, send)
            return
        route = "/webhooks/{webhook_token}"  # the route, not the path: the token is a secret
        attributes = {"http.request.method": "POST", "http.route": route}
        with tracing.span(f"POST {route}", SpanKind.SERVER, attributes) as span:
            try:
                await self._counted(scope, receive, send)
            finally:
                span.set_attribute("callwatch.provider", scope.get(PROVIDER, "unknown"))
                span.set_attribute("callwatch.outcome", scope.get(OUTCOME, "error"))

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = "error"
        try:
            await self.app(scope, receive, send)
            outcome = scope.get(OUTCOME, "accepted")
        except TooManyRequests:
            outcome = "limited"
            raise
        except RequestError:
            outcome = "rejected"
            raise
        except StoreUnavailable:
            outcome = "unavailable"
            raise
        finally:
            scope[OUTCOME] = outcome
            counts_of(scope["app"])[(scope.get(PROVIDER, "unknown"), outcome)] += 1
            if (owner := scope.get(SOURCE)) is not None:  # the dashboard's per-source activity
                tally_of(scope["app"]).note(owner, outcome)
