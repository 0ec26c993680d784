"""Aggregates over the org's calls (`GET /api/stats`), overall and per agent, day or source."""

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Date, Float, cast, func, select
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.orm import Session

from callwatch.filters import CallFilters
from callwatch.metrics import percentile
from callwatch.tables import Call, Source

GroupBy = Literal["agent", "day", "source"]
COST_PARTS = ("total", "llm", "stt", "tts", "telephony", "platform")
# (name in the response, column); each gets mean, p50 and p95 over the calls that have a value.
DISTRIBUTIONS = (
    ("duration_s", Call.duration_s),
    ("turn_latency_p50_ms", Call.latency_turn_p50_ms),
    ("turn_latency_p95_ms", Call.latency_turn_p95_ms),
    ("time_to_first_word_ms", Call.time_to_first_word_ms),
)


class StatsQuery(CallFilters):
    group_by: GroupBy | None = None


class Spread(BaseModel):
    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None


class CostTotals(BaseModel):
    currency: str | None
    calls: int = 0
    total: float = 0.0
    llm: float = 0.0
    stt: float = 0.0
    tts: float = 0.0
    telephony: float = 0.0
    platform: float = 0.0


class Aggregate(BaseModel):
    key: str | None = Field(None, description="the agent id, UTC day or source name")
    calls: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)
    by_end_reason: dict[str, int] = Field(default_factory=dict)
    answered: int = 0
    answer_rate: float | None = Field(None, description="answered / calls")
    duration_s: Spread = Field(default_factory=Spread)
    turn_latency_p50_ms: Spread = Field(default_factory=Spread, description="of per-call p50s")
    turn_latency_p95_ms: Spread = Field(default_factory=Spread, description="of per-call p95s")
    time_to_first_word_ms: Spread = Field(default_factory=Spread)
    cost: list[CostTotals] = Field(default_factory=list, description="one entry per currency")


class StatsResult(BaseModel):
    group_by: GroupBy | None
    overall: Aggregate
    groups: list[Aggregate]


def compute(session: Session, org_id: str, query: StatsQuery) -> StatsResult:
    where = query.where(org_id)
    postgres = session.get_bind().dialect.name == "postgresql"
    group = _group_column(query.group_by, postgres)
    groups: dict[Any, Aggregate] = defaultdict(Aggregate)
    overall = Aggregate()
    _add_counts(session, where, group, groups, overall)
    if postgres:
        _add_spreads_in_sql(session, where, group, groups, overall)
    else:
        _add_spreads_in_python(session, where, group, groups, overall)
    names = _names(session, org_id) if query.group_by == "source" else {}
    for key, aggregate in groups.items():
        aggregate.key = None if key is None else names.get(key, str(key))
    ordered = sorted(groups.values(), key=lambda aggregate: (aggregate.key is None, aggregate.key))
    return StatsResult(group_by=query.group_by, overall=overall, groups=ordered)


def _group_column(group_by: GroupBy | None, postgres: bool) -> ColumnElement[Any] | None:
    if group_by == "agent":
        return Call.agent_id.expression
    if group_by == "source":
        return Call.source_id.expression
    if group_by == "day":
        if postgres:
            return cast(func.timezone("UTC", Call.started_at), Date)
        return func.date(Call.started_at)  # SQLite stores UTC text
    return None


def _add_counts(
    session: Session,
    where: list[ColumnElement[bool]],
    group: ColumnElement[Any] | None,
    groups: dict[Any, Aggregate],
    overall: Aggregate,
) -> None:
    keys = [Call.status, Call.end_reason, Call.cost_currency]
    columns = [
        *keys,
        func.count(),
        func.count(Call.answered_at),
        func.count(Call.cost_total),
        *(func.coalesce(func.sum(getattr(Call, f"cost_{part}")), 0.0) for part in COST_PARTS),
    ]
    if group is not None:
        keys.append(group)  # type: ignore[arg-type]
        columns.append(group)
    rows = session.execute(select(*columns).where(*where).group_by(*keys))
    for row in rows:
        status, end_reason, currency, calls, answered, costed, *sums = row[: 6 + len(COST_PARTS)]
        targets = [overall] if group is None else [overall, groups[row[-1]]]
        for aggregate in targets:
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
    for aggregate in [overall, *groups.values()]:
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


def _add_spreads_in_sql(
    session: Session,
    where: list[ColumnElement[bool]],
    group: ColumnElement[Any] | None,
    groups: dict[Any, Aggregate],
    overall: Aggregate,
) -> None:
    """Postgres: percentile_cont (linear interpolation, as metrics.percentile) per group."""
    columns: list[Any] = []
    for _, column in DISTRIBUTIONS:
        columns += [
            func.count(column),
            func.avg(column),
            func.percentile_cont(array([0.5, 0.95])).within_group(cast(column, Float)),
        ]
    targets: list[tuple[ColumnElement[Any] | None, dict[Any, Aggregate] | None]] = [(None, None)]
    if group is not None:
        targets.append((group, groups))
    for key_column, into in targets:
        statement = select(*columns, *([key_column] if key_column is not None else [])).where(
            *where
        )
        if key_column is not None:
            statement = statement.group_by(key_column)
        for row in session.execute(statement):
            aggregate = overall if into is None else into[row[-1]]
            for index, (name, _) in enumerate(DISTRIBUTIONS):
                count, mean, quantiles = row[3 * index : 3 * index + 3]
                setattr(aggregate, name, _spread(count, mean, quantiles))


def _add_spreads_in_python(
    session: Session,
    where: list[ColumnElement[bool]],
    group: ColumnElement[Any] | None,
    groups: dict[Any, Aggregate],
    overall: Aggregate,
) -> None:
    """SQLite has no percentile aggregate; the embedded database is small enough to sort here."""
    columns = [column for _, column in DISTRIBUTIONS]
    values: dict[Any, list[list[float]]] = defaultdict(lambda: [[] for _ in DISTRIBUTIONS])
    statement = select(*columns, *([group] if group is not None else [])).where(*where)
    for row in session.execute(statement):
        buckets = [values[None]] + ([values[("group", row[-1])]] if group is not None else [])
        for bucket in buckets:
            for index in range(len(DISTRIBUTIONS)):
                value = row[index]
                if value is not None:
                    bucket[index].append(float(value))
    for key, lists in values.items():
        aggregate = overall if key is None else groups[key[1]]
        for (name, _), samples in zip(DISTRIBUTIONS, lists, strict=True):
            setattr(aggregate, name, _spread_of(samples))


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


def _names(session: Session, org_id: str) -> dict[Any, str]:
    return dict(
        session.execute(select(Source.id, Source.name).where(Source.org_id == org_id)).all()
    )
