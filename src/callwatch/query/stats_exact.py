"""`GET /api/stats` from the calls themselves: exact, O(calls in the window) (design.md §stats).

The stats filters that are not rollup dimensions read these, and so does any window of few calls.
"""

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Date, Float, cast, func, select, text
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.orm import Session, sessionmaker

from callwatch.db import transaction
from callwatch.model.call_metrics import percentile
from callwatch.query.stats_models import (
    Aggregate,
    CostTotals,
    GroupBy,
    Spread,
    StatsQuery,
    StatsResult,
)
from callwatch.tables import Call, Source

COST_PARTS = ("total", "llm", "stt", "tts", "telephony", "platform")
# (name in the response, column); each gets mean, p50 and p95 over the calls that have a value.
DISTRIBUTIONS = (
    ("duration_s", Call.duration_s),
    ("turn_latency_p50_ms", Call.latency_turn_p50_ms),
    ("turn_latency_p95_ms", Call.latency_turn_p95_ms),
    ("time_to_first_word_ms", Call.time_to_first_word_ms),
)


@dataclass
class _Tally:
    """The aggregates being filled in: overall, and per value of `group` when grouping."""

    where: list[ColumnElement[bool]]
    group: ColumnElement[Any] | None
    overall: Aggregate = field(default_factory=Aggregate)
    groups: dict[Any, Aggregate] = field(default_factory=lambda: defaultdict(Aggregate))

    def targets(self, key: Any) -> list[Aggregate]:
        return [self.overall] if self.group is None else [self.overall, self.groups[key]]


def compute(sessions: sessionmaker[Session], org_id: str, query: StatsQuery) -> StatsResult:
    """The stats from every call in the window that the filters choose."""
    with transaction(sessions) as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        names = names_of(session, org_id) if query.group_by == "source" else {}
    where, group = query.where(org_id), _group_column(query.group_by, postgres)
    counts, overall, grouped = _Tally(where, group), _Tally(where, None), _Tally(where, group)
    if postgres:
        # The counting scan (parallel workers) and the percentile sorts (one process each) run
        # side by side, each in its own transaction: the request takes the longest, not the sum.
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = [pool.submit(_run, sessions, _add_counts, counts)]
            if group is not None:
                jobs.append(pool.submit(_run, sessions, _add_spreads_in_sql, grouped))
            _run(sessions, _add_spreads_in_sql, overall)
            for job in jobs:
                job.result()
    else:
        _run(sessions, _add_counts, counts)
        _run(sessions, _add_spreads_in_python, grouped)
        overall = grouped
    # The group of calls without an agent (key None) has its own spreads, not the overall ones.
    pairs = [(counts.overall, overall.overall)]
    pairs += [(aggregate, grouped.groups[key]) for key, aggregate in counts.groups.items()]
    for aggregate, source in pairs:
        for name, _ in DISTRIBUTIONS:
            setattr(aggregate, name, getattr(source, name))
    for key, aggregate in counts.groups.items():
        aggregate.key = None if key is None else names.get(key, _key_text(key))
    ordered = sorted(
        counts.groups.values(), key=lambda aggregate: (aggregate.key is None, aggregate.key)
    )
    return StatsResult(group_by=query.group_by, overall=counts.overall, groups=ordered)


def _run(
    sessions: sessionmaker[Session], step: Callable[[Session, "_Tally"], None], tally: "_Tally"
) -> None:
    with transaction(sessions) as session:
        if session.get_bind().dialect.name == "postgresql":
            # Sorting up to a million values per percentile: in memory, not on disk. And the
            # covering index is a third of the table's size; over most of an org the planner
            # would still pick the table.
            session.execute(text("SET LOCAL work_mem = '64MB'"))
            session.execute(text("SET LOCAL enable_seqscan = off"))
        step(session, tally)


def _group_column(group_by: GroupBy | None, postgres: bool) -> ColumnElement[Any] | None:
    columns = {"agent": Call.agent_id, "source": Call.source_id, "direction": Call.direction}
    if group_by in columns:
        return columns[group_by].expression
    if group_by == "status":
        return Call.status.expression
    if group_by is None:
        return None
    if postgres:
        utc = func.timezone("UTC", Call.started_at)
        if group_by == "hour":
            return func.date_trunc("hour", utc)
        return cast(func.date_trunc("week", utc) if group_by == "week" else utc, Date)
    # SQLite stores UTC text
    if group_by == "hour":
        return func.strftime("%Y-%m-%dT%H:00:00Z", Call.started_at)
    if group_by == "week":
        return func.date(Call.started_at, "-6 days", "weekday 1")  # the Monday on or before
    return func.date(Call.started_at)


def _key_text(key: Any) -> str:
    if isinstance(key, datetime):
        return f"{key:%Y-%m-%dT%H:00:00Z}"
    return key.isoformat() if isinstance(key, date) else str(key)


def _add_counts(session: Session, tally: _Tally) -> None:
    keys = [Call.status, Call.end_reason, Call.cost_currency]
    columns = [
        *keys,
        func.count(),
        func.count(Call.answered_at),
        func.count(Call.cost_total),
        *(func.coalesce(func.sum(getattr(Call, f"cost_{part}")), 0.0) for part in COST_PARTS),
    ]
    if tally.group is not None:
        keys.append(tally.group)  # type: ignore[arg-type]
        columns.append(tally.group)
    rows = session.execute(select(*columns).where(*tally.where).group_by(*keys))
    for row in rows:
        status, end_reason, currency, calls, answered, costed, *sums = row[: 6 + len(COST_PARTS)]
        for aggregate in tally.targets(row[-1]):
            aggregate.calls += calls
            aggregate.answered += answered
            if status is not None:
                aggregate.by_status[status] = aggregate.by_status.get(status, 0) + calls
            if end_reason is not None:
                aggregate.by_end_reason[end_reason] = (
                    aggregate.by_end_reason.get(end_reason, 0) + calls
                )
            if costed:
                _cost_of(aggregate, currency).calls += costed
                for part, value in zip(COST_PARTS, sums, strict=True):
                    totals = _cost_of(aggregate, currency)
                    setattr(totals, part, round(getattr(totals, part) + value, 6))
    for aggregate in [tally.overall, *tally.groups.values()]:
        aggregate.answer_rate = (
            round(aggregate.answered / aggregate.calls, 4) if aggregate.calls else None
        )
        aggregate.cost.sort(key=lambda totals: totals.currency or "")


def _cost_of(aggregate: Aggregate, currency: str | None) -> CostTotals:
    for totals in aggregate.cost:
        if totals.currency == currency:
            return totals
    totals = CostTotals(currency=currency)
    aggregate.cost.append(totals)
    return totals


def _add_spreads_in_sql(session: Session, tally: _Tally) -> None:
    """Postgres: percentile_cont (linear interpolation, as metrics.percentile), per group if
    the tally groups, else overall."""
    columns: list[Any] = []
    for _, column in DISTRIBUTIONS:
        columns += [
            func.count(column),
            func.avg(column),
            func.percentile_cont(array([0.5, 0.95])).within_group(cast(column, Float)),
        ]
    statement = select(*columns).where(*tally.where)
    if tally.group is not None:
        statement = select(*columns, tally.group).where(*tally.where).group_by(tally.group)
    for row in session.execute(statement):
        aggregate = tally.overall if tally.group is None else tally.groups[row[-1]]
        for index, (name, _) in enumerate(DISTRIBUTIONS):
            count, mean, quantiles = row[3 * index : 3 * index + 3]
            setattr(aggregate, name, _spread(count, mean, quantiles))


def _add_spreads_in_python(session: Session, tally: _Tally) -> None:
    """SQLite has no percentile aggregate; the embedded database is small enough to sort here."""
    columns = [column for _, column in DISTRIBUTIONS]
    samples: dict[int, list[list[float]]] = {}
    grouping = [tally.group] if tally.group is not None else []
    for row in session.execute(select(*columns, *grouping).where(*tally.where)):
        for aggregate in tally.targets(row[-1]):
            lists = samples.setdefault(id(aggregate), [[] for _ in DISTRIBUTIONS])
            for index, value in enumerate(row[: len(DISTRIBUTIONS)]):
                if value is not None:
                    lists[index].append(float(value))
    for aggregate in [tally.overall, *tally.groups.values()]:
        lists = samples.get(id(aggregate), [[] for _ in DISTRIBUTIONS])
        for (name, _), values in zip(DISTRIBUTIONS, lists, strict=True):
            setattr(aggregate, name, _spread_of(values))


def _spread(count: int, mean: float | None, quantiles: Iterable[float] | None) -> Spread:
    if not count or mean is None or quantiles is None:
        return Spread()
    p50, p95 = quantiles
    return Spread(count=count, mean=_round(mean), p50=_round(p50), p95=_round(p95))


def _spread_of(samples: list[float]) -> Spread:
    if not samples:
        return Spread()
    samples.sort()
    return Spread(
        count=len(samples),
        mean=_round(math.fsum(samples) / len(samples)),
        p50=_round(percentile(samples, 50)),
        p95=_round(percentile(samples, 95)),
    )


def _round(value: float) -> float:
    return round(float(value), 2)


def names_of(session: Session, org_id: str) -> dict[Any, str]:
    """The org's sources' names by id."""
    return dict(
        session.execute(select(Source.id, Source.name).where(Source.org_id == org_id)).all()
    )
