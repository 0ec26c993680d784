"""Webhook intake counted in the web process, by provider and outcome, for `GET /metrics`;
and, when tracing, each webhook request's server span (the root of its trace).

A prometheus-client Counter, one per app and in no registry of its own: `/metrics` collects it
into its registry (observability/collector.py). Counting costs one labelled increment per request
(bench/README.md measured the receiver with it against the dict it replaced).
"""

from typing import Any

from opentelemetry.trace import SpanKind
from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from callwatch import tracing
from callwatch.errors import RequestError, StoreUnavailable

OUTCOMES = ("accepted", "duplicate", "rejected", "unavailable", "error")


def counter_of(app: Any) -> Counter:
    """This app's webhook requests by (provider, outcome), since it started."""
    counter: Counter | None = getattr(app.state, "intake_counter", None)
    if counter is None:
        counter = app.state.intake_counter = Counter(
            "callwatch_webhooks",
            "Webhook requests this web process answered, by the source's provider and outcome.",
            ("provider", "outcome"),
            registry=None,
        )
    return counter


def counts_of(app: Any) -> dict[tuple[str, str], float]:
    """This app's (provider, outcome) → webhook requests, since it started."""
    return {
        (sample.labels["provider"], sample.labels["outcome"]): sample.value
        for family in counter_of(app).collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


# What the endpoint notes in the request's scope as it goes, so counting costs no second look-up.
PROVIDER = "callwatch.provider"
OUTCOME = "callwatch.outcome"


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
        except RequestError:
            outcome = "rejected"
            raise
        except StoreUnavailable:
            outcome = "unavailable"
            raise
        finally:
            scope[OUTCOME] = outcome
            counter_of(scope["app"]).labels(scope.get(PROVIDER, "unknown"), outcome).inc()
