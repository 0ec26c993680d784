"""`/`: the org's calls over a window, overall, over time, per agent and per source.

Every figure about calls comes from `query.stats.compute`, the function behind GET /api/stats:
this page never reads calls itself, so it gets faster with whatever that function reads. Each
source's webhook traffic (last webhook, accepted, refused, backlog) comes from `activity`.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from callwatch.dashboard import activity, charts
from callwatch.dashboard.render import page
from callwatch.db import transaction
from callwatch.orgs import tenancy
from callwatch.query import stats
from callwatch.web.services import services_of
from callwatch.web.sessions import Viewer

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


@dataclass(frozen=True)
class SourceRow:
    calls: Summary
    traffic: activity.Traffic


def source_rows(
    request: Request,
    viewer: Viewer,
    groups: list[stats.Aggregate],
    since: datetime,
    now: datetime,
) -> tuple[list[SourceRow], bool]:
    """A row per source with calls in the window or a live source (none: zeros); whether the
    webhook counts could be read."""
    runtime = services_of(request).runtime
    with transaction(runtime.sessions) as session:
        ids = {s.name: s.id for s in tenancy.list_sources(session, viewer.org_id)}
    board = activity.board(runtime, viewer.org_id, since, now)
    summaries = {summary(group).key: summary(group) for group in groups}
    for name in ids.keys() - summaries.keys():
        summaries[name] = Summary(name, 0, None, None, None, None, None, None, None, None)
    rows = [
        SourceRow(found, board.of(ids.get(name, "")))
        for name, found in sorted(summaries.items(), key=lambda item: -item[1].calls)
    ]
    return rows, board.counted


# The charts' periods: a 90-day window by the week (13 bars, and a seventh of the day groups'
# histogram bins to read: bench/dashboard.py), the others by the day.
PERIODS = {"24h": "day", "7d": "day", "30d": "day", "90d": "week"}


def over_time(periods: list[Summary], period: str) -> list[charts.Chart]:
    return [
        charts.columns(
            f"Calls per {period}", [(d.key, d.calls, f"{d.key}: {d.calls}") for d in periods]
        ),
        charts.columns(
            f"Turn latency p95 per {period} (ms)",
            [(d.key, d.p95 or 0, f"{d.key}: {d.p95 or 0:,.0f} ms") for d in periods],
        ),
        charts.columns(
            f"Cost per {period}",
            [(d.key, d.cost or 0, f"{d.key}: {d.cost or 0:,.4f}") for d in periods],
        ),
    ]


def overview(request: Request, viewer: Viewer) -> Response:
    runtime = services_of(request).runtime
    window = activity.chosen_window(request)
    now = runtime.clock()
    since = now - activity.WINDOWS[window]
    sort = request.query_params.get("sort", "calls")
    descending = request.query_params.get("order", "desc") != "asc"

    def compute(group_by: Any) -> stats.StatsResult:
        query = stats.StatsQuery(date_from=since, group_by=group_by)
        # Always the rollups (percentiles within 1 %), never the calls: a small window's exact
        # percentiles read every call of it, three times over (bench/dashboard.py: 24 h at 1M
        # calls took 0.5 s that way).
        return stats.compute(runtime.sessions, viewer.org_id, query, exact_up_to=0)

    period = PERIODS[window]
    # At once: each is mostly Postgres's time (bench/dashboard.py: a 90-day window's three
    # reads took 387 ms one after the other and 261 ms together, on 2 cores).
    with ThreadPoolExecutor(3, thread_name_prefix="callwatch-overview") as reads:
        by_agent, by_period, by_source = reads.map(compute, ["agent", period, "source"])
    agents = [summary(group) for group in by_agent.groups]
    sources, counted = source_rows(request, viewer, by_source.groups, since, now)
    return page(
        request,
        "overview.html",
        {
            "viewer": viewer,
            "window": window,
            "windows": list(activity.WINDOWS),
            "overall": summary(by_agent.overall),
            "charts": over_time([summary(group) for group in by_period.groups], period),
            "agents": sorted_rows(agents, sort, descending),
            "sources": sources,
            "counted": counted,
            "sort": sort,
            "descending": descending,
            "sorts": SORTS,
        },
    )
