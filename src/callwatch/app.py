"""The Starlette application: routes, error mapping and the per-process lifecycle."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from callwatch.alerts import endpoints as alert_api
from callwatch.downstream import endpoints as subscription_api
from callwatch.intake import counts
from callwatch.intake import endpoints as webhooks
from callwatch.intake.inbox_writer import InboxWriter
from callwatch.intake.receiver import APPLICATION_NAME, Intake
from callwatch.intake.source_cache import Sources
from callwatch.logs import configure_logging
from callwatch.observability import endpoints as exposition
from callwatch.observability import endpoints as health
from callwatch.orgs import endpoints
from callwatch.query import endpoints as api
from callwatch.queue import Background, Producer
from callwatch.runtime import Runtime, admin_token
from callwatch.settings import Settings
from callwatch.web import endpoints as docs
from callwatch.web.problems import HANDLERS, handle
from callwatch.web.services import Services

WEBHOOK = Route(
    "/webhooks/{webhook_token}",
    counts.Counted(webhooks.WebhookEndpoint()),
    methods=["POST"],
)

ROUTES = [
    WEBHOOK,
    Route("/api/admin/orgs", endpoints.create_org, methods=["POST"]),
    Route("/api/sources", endpoints.sources, methods=["GET", "POST"]),
    Route("/api/calls", api.list_calls, methods=["GET"]),
    Route("/api/calls/export", api.export_calls, methods=["GET"]),
    Route("/api/calls/search", api.search_calls, methods=["POST"]),
    Route("/api/calls/{call_id}", api.get_call, methods=["GET"]),
    Route("/api/calls/{call_id}/events", api.call_events, methods=["GET"]),
    Route("/api/agents/{agent_id}/call_stats", api.agent_call_stats, methods=["GET"]),
    Route("/api/stats", api.call_aggregates, methods=["GET"]),
    Route("/api/quarantine", api.quarantined_events, methods=["GET"]),
    Route("/openapi.json", docs.openapi_json, methods=["GET"]),
    Route("/docs", docs.page, methods=["GET"]),
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/readyz", health.readyz, methods=["GET"]),
    Route("/metrics", exposition.metrics, methods=["GET"]),
    *alert_api.ROUTES,
    *subscription_api.ROUTES,
]


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        runtime = Runtime.start(settings)
        producer = Producer(settings.broker_url)
        enqueue = Background(producer.ingest)
        deadline_s = settings.intake_deadline_s
        sources = Sources(
            runtime.sessions, runtime.vault, settings.source_cache_s, deadline_s=deadline_s
        )
        writer = None
        if runtime.engine.dialect.name == "postgresql":
            writer = InboxWriter(settings.database_url, APPLICATION_NAME)
        intake = Intake(runtime.sessions, sources, enqueue, writer, deadline_s=deadline_s)
        app.state.services = Services(
            runtime=runtime,
            admin_token=admin_token(settings),
            intake=intake,
            producer=producer,
        )
        # What start-up allocated lives for the whole process; keeping it out of the cyclic
        # collector's generations removes most of the GC pauses from the request tail.
        gc.freeze()
        try:
            yield
        finally:
            intake.close()
            enqueue.close()
            producer.close()
            runtime.close()

    return App(routes=ROUTES, exception_handlers=HANDLERS, lifespan=lifespan)


class App(Starlette):
    """Starlette, but a webhook POST goes straight to its route: the middleware stack and the
    router's walk took ~3.5 of ~27 µs of the web process's CPU per webhook (bench/README.md)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match, child = WEBHOOK.matches(scope)
        if match is not Match.FULL:  # other methods on a webhook URL too: the router's 405
            await super().__call__(scope, receive, send)
            return
        scope.update(child, app=self)
        try:
            await WEBHOOK.app(scope, receive, send)
        except Exception as exc:
            response = await handle(Request(scope), exc)
            await response(scope, receive, send)
