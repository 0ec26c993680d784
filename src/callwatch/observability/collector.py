"""The registry behind `GET /metrics`: this process, its intake, and what is read at scrape.

One registry per app (not prometheus-client's global one), so that two apps in a process (the
tests) count apart. The database and Redis are read at each scrape by a custom Collector: web
and workers are separate processes, and the database and Redis are what they share.
"""

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from callwatch.db import transaction
from callwatch.intake import counts as intake_counts
from callwatch.observability import agents, scrape
from callwatch.runtime import Runtime

log = logging.getLogger("callwatch.web")

# `_created` samples double every counter's series for a timestamp nobody here queries.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Scraped(Collector):
    """The database's and Redis's families, read at each scrape; a dependency that does not
    answer is a 0 in `callwatch_dependency_up`, not a failed scrape."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        rt = self.runtime
        up = GaugeMetricFamily(
            "callwatch_dependency_up",
            "Whether this scrape could read the dependency (1) or not (0).",
            labels=["dependency"],
        )
        try:
            with transaction(rt.sessions) as session:
                now = rt.clock()
                families = scrape.database(session, now)
                families += agents.quality(session, now, rt.settings.metrics_top_agents)
            yield from families
            up.add_metric(["database"], 1)
        except Exception as exc:
            log.warning("metrics: database unreachable", extra={"error": type(exc).__name__})
            up.add_metric(["database"], 0)
        try:
            if rt.redis is None:
                raise RuntimeError("no Redis configured")
            yield from scrape.redis(rt.redis)
            up.add_metric(["redis"], 1)
        except Exception as exc:
            log.warning("metrics: Redis unreachable", extra={"error": type(exc).__name__})
            up.add_metric(["redis"], 0)
        yield up


class Intake(Collector):
    """The web process's webhook counts (kept in a plain Counter: intake/counts.py says why),
    outcome `limited` being the 429s of sources' rate limits."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "callwatch_webhooks",
            "Webhook requests this web process answered, by the source's provider and outcome.",
            labels=["provider", "outcome"],
        )
        for (provider, outcome), count in sorted(intake_counts.counts_of(self.app).items()):
            family.add_metric([provider, outcome], count)
        yield family
        yield CounterMetricFamily(
            "callwatch_rate_limit_unavailable",
            "Rate-limit leases this web process granted without Redis (it did not answer in "
            "time), letting their webhooks pass.",
            value=self.app.state.services.limits.unavailable,
        )


def registry_of(app: Any, runtime: Runtime) -> CollectorRegistry:
    """This app's registry, made at its first scrape."""
    registry: CollectorRegistry | None = getattr(app.state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        registry.register(GC_COLLECTOR)
        registry.register(Intake(app))
        registry.register(Scraped(runtime))
        app.state.metrics_registry = registry
    return registry
