"""The Starlette application: mounts each package's endpoints, maps errors, runs the lifecycle."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from callwatch import tracing
from callwatch.alerts import endpoints as alerts
from callwatch.dashboard import pages as dashboard
from callwatch.downstream import endpoints as downstream
from callwatch.intake import endpoints as intake
from callwatch.intake.activity import Flusher, tally_of
from callwatch.intake.inbox_writer import InboxWriter
from callwatch.intake.receiver import APPLICATION_NAME, Intake
from callwatch.intake.source_cache import Sources
from callwatch.logs import configure_logging
from callwatch.observability import endpoints as observability
from callwatch.orgs import endpoints as orgs
from callwatch.query import endpoints as query
from callwatch.queue import Background, Producer
from callwatch.ratelimits import Leases
from callwatch.recordings import endpoints as recordings
from callwatch.retention import endpoints as retention
from callwatch.runtime import Runtime, admin_token
from callwatch.settings import Settings
from callwatch.web import endpoints as web
from callwatch.web.operations import routes
from callwatch.web.problems import HANDLERS, handle
from callwatch.web.services import Services

WEBHOOK, *API = routes(
    [
        intake.WEBHOOK,
        *orgs.ENDPOINTS,
        *query.ENDPOINTS,
        *recordings.ENDPOINTS,
        *retention.ENDPOINTS,
        *observability.ENDPOINTS,
        *alerts.ENDPOINTS,
        *downstream.ENDPOINTS,
    ]
)
ROUTES = [WEBHOOK, *API, *web.ROUTES, *dashboard.ROUTES]


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        tracing.configure("callwatch-web")
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
        limits_redis = redis.asyncio.Redis.from_url(settings.broker_url)
        activity = Flusher(tally_of(app), limits_redis)
        activity.start()
        app.state.services = Services(
            runtime=runtime,
            admin_token=admin_token(settings),
            intake=intake,
            producer=producer,
            limits=Leases(limits_redis),
        )
        # What start-up allocated lives for the whole process; keeping it out of the cyclic
        # collector's generations removes most of the GC pauses from the request tail.
        gc.freeze()
        try:
            yield
        finally:
            intake.close()
            await activity.close()
            enqueue.close()
            producer.close()
            await limits_redis.aclose()
            runtime.close()
            tracing.flush()

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
