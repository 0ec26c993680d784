"""`/`: the org's calls over a window, overall, over time, per agent and per source.

Every figure comes from `query.stats.compute`, the function behind GET /api/stats: this page
never reads calls itself, so it gets faster with whatever that function reads.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from callwatch.dashboard import charts
from callwatch.dashboard.render import page
from callwatch.query import stats
from callwatch.web.sessions import Viewer, services_of

WINDOWS = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
SORTS = ("key", "calls", "answer_rate", "failure_rate", "p50", "p95", "first_word", "cost")


@dataclass(frozen=True)
class Summary:
    """One row of figures: the whole window, an agent, a day or a source."""

    key: str
    calls: int
    answer_rate: float | None
    failure_rate: float | None
    p50: float | None
    p95: float | None
    first_word: float | None
    cost: float | None
    currency: str | None
    minutes: float | None


def summary(aggregate: stats.Aggregate) -> Summary:
    calls = aggregate.calls
    failed = aggregate.by_status.get("failed", 0)
    cost = aggregate.cost[0] if aggregate.cost else None
    duration = aggregate.duration_s
    return Summary(
        key=aggregate.key or "(none)",
        calls=calls,
        answer_rate=aggregate.answer_rate,
        failure_rate=round(failed / calls, 4) if calls else None,
        p50=aggregate.turn_latency_p50_ms.p50,
        p95=aggregate.turn_latency_p95_ms.p95,
        first_word=aggregate.time_to_first_word_ms.p50,
        cost=cost.total if cost else None,
        currency=cost.currency if cost else None,
        minutes=round(duration.mean * duration.count / 60, 1) if duration.mean else None,
    )


def sorted_rows(rows: list[Summary], sort: str, descending: bool) -> list[Summary]:
    """Rows by `sort`, rows without that figure last either way."""
    if sort not in SORTS:
        sort = "calls"
    present = [row for row in rows if getattr(row, sort) is not None]
    absent = [row for row in rows if getattr(row, sort) is None]
    return sorted(present, key=lambda row: getattr(row, sort), reverse=descending) + absent


def over_time(days: list[Summary]) -> list[charts.Chart]:
    return [
        charts.columns("Calls per day", [(d.key, d.calls, f"{d.key}: {d.calls}") for d in days]),
        charts.columns(
            "Turn latency p95 per day (ms)",
            [(d.key, d.p95 or 0, f"{d.key}: {d.p95 or 0:,.0f} ms") for d in days],
        ),
        charts.columns(
            "Cost per day",
            [(d.key, d.cost or 0, f"{d.key}: {d.cost or 0:,.4f}") for d in days],
        ),
    ]


def overview(request: Request, viewer: Viewer) -> Response:
    runtime = services_of(request).runtime
    window = request.query_params.get("window", "24h")
    if window not in WINDOWS:
        window = "24h"
    since = runtime.clock() - WINDOWS[window]
    sort = request.query_params.get("sort", "calls")
    descending = request.query_params.get("order", "desc") != "asc"

    def compute(group_by: Any) -> stats.StatsResult:
        query = stats.StatsQuery(date_from=since, group_by=group_by)
        exact_up_to = runtime.settings.stats_exact_up_to
        return stats.compute(runtime.sessions, viewer.org_id, query, exact_up_to)

    by_agent, by_day, by_source = compute("agent"), compute("day"), compute("source")
    agents = [summary(group) for group in by_agent.groups]
    return page(
        request,
        "overview.html",
        {
            "viewer": viewer,
            "window": window,
            "windows": list(WINDOWS),
            "overall": summary(by_agent.overall),
            "charts": over_time([summary(group) for group in by_day.groups]),
            "agents": sorted_rows(agents, sort, descending),
            "sources": [summary(group) for group in by_source.groups],
            "sort": sort,
            "descending": descending,
            "sorts": SORTS,
        },
    )
