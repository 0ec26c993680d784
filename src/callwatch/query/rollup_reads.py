"""Stats from the rollups (calls/rollups.py): a window tiled by whole buckets, its edges from calls.

A window [from, to) is cut at the hours inside it: the whole hours are tiled greedily by the
largest aligned buckets that fit (64, 16, 4 days, a day, an hour: a few dozen at most), and the
parts of an hour at either end are read from the calls themselves. So counts and sums are exact
at any window; percentiles come from the buckets' histograms, merged with the edges' values
(model/histogram.py: within 1 %). Filters that are not rollup dimensions read the calls instead
(`answers`).
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.orm import Session

from callwatch.calls.rollups import COLUMNS, TIERS, Contribution, contribution, period_start
from callwatch.tables import (
    BY_DIMENSIONS,
    ROLLUP_COUNTERS,
    WHOLE_ORG,
    Call,
    Source,
    stats_agent_bins,
    stats_bins,
    stats_org_rollups,
    stats_rollups,
)

# Stats filters answered from the rollups (with the window); any other one reads the calls.
ROLLUP_FILTERS = frozenset({"agent_id", "source", "direction", "status", "date_from", "date_to"})
# Groupings by a dimension: its column in both tables.
DIMENSION_GROUPS = {
    "agent": "agent_id",
    "source": "source_id",
    "direction": "direction",
    "status": "status",
}
TIME_GROUPS = ("hour", "day", "week")
HOUR = timedelta(hours=1)
Run = tuple[int, datetime, datetime]  # buckets of one tier starting in [start, end)


@dataclass
class Tally:
    """What the buckets and edge calls of one group add up to."""

    # (status, end_reason, currency) -> ROLLUP_COUNTERS' sums
    counters: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    bins: dict[int, dict[int, int]] = field(default_factory=dict)  # metric -> bin -> count

    def add_counters(self, combination: tuple[str, str, str], values: Iterable[int]) -> None:
        totals = self.counters.setdefault(combination, [0] * len(ROLLUP_COUNTERS))
        for index, value in enumerate(values):
            totals[index] += int(value)

    def add_bin(self, metric: int, bin: int, count: int) -> None:
        counts = self.bins.setdefault(metric, {})
        counts[bin] = counts.get(bin, 0) + int(count)

    def add_bins(self, metric: int, counts: dict[int, int]) -> None:
        if metric not in self.bins:
            self.bins[metric] = counts
            return
        for bin, count in counts.items():
            self.add_bin(metric, bin, count)


def answers(filters: Any) -> bool:
    """Whether the rollups answer these filters (every one given is a rollup dimension)."""
    given = {
        name for name in type(filters).model_fields if getattr(filters, name) not in (None, [])
    }
    return given - {"group_by"} <= ROLLUP_FILTERS


def cover(
    start: datetime, end: datetime
) -> tuple[list[tuple[int, datetime]], list[tuple[datetime, datetime]]]:
    """Buckets (tier, start) tiling [start, end)'s whole hours, and the parts left at its ends."""
    first, last = _ceil_hour(start), period_start(1, end)
    if first >= last:
        return [], [(start, end)] if start < end else []
    edges = [(start, first)] if start < first else []
    edges += [(last, end)] if last < end else []
    buckets, at = [], first
    while at < last:
        tier = next(
            tier
            for tier in reversed(TIERS)
            if period_start(tier, at) == at and at + timedelta(hours=tier) <= last
        )
        buckets.append((tier, at))
        at += timedelta(hours=tier)
    return buckets, edges


def pieces(group_by: str | None, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The window cut where a time grouping's groups begin (one piece if it is not by time)."""
    if group_by not in TIME_GROUPS:
        return [(start, end)]
    cuts, at = [], _group_start(group_by, start)
    while at < end:
        following = at + (
            HOUR if group_by == "hour" else timedelta(days=1 if group_by == "day" else 7)
        )
        cuts.append((max(at, start), min(following, end)))
        at = following
    return cuts


def time_key(group_by: str, at: datetime) -> str:
    if group_by == "hour":
        return f"{at:%Y-%m-%dT%H:00:00Z}"
    return _group_start(group_by, at).date().isoformat()


def extent(session: Session, org_id: str) -> tuple[datetime, datetime] | None:
    """The hours the org's calls start in, first to last (None: no calls)."""
    table = stats_rollups
    first, last = session.execute(
        select(func.min(table.c.period_start), func.max(table.c.period_start)).where(
            table.c.org_id == org_id, table.c.tier == 1
        )
    ).one()
    if first is None or last is None:
        return None
    return _aware(first), _aware(last) + HOUR


def runs(buckets: Iterable[tuple[int, datetime]]) -> list[Run]:
    """Buckets merged into runs of one tier that follow each other: a few conditions."""
    merged: list[Run] = []
    for tier, start in sorted(buckets):
        end = start + timedelta(hours=tier)
        if merged and merged[-1][0] == tier and merged[-1][2] == start:
            merged[-1] = (tier, merged[-1][1], end)
        else:
            merged.append((tier, start, end))
    return merged


def summed(
    table: Any,
    keys: list[Any],
    values: list[Any],
    conditions: list[ColumnElement[bool]],
    bucket_runs: list[Run],
) -> Select[Any]:
    """The sums of `values` by `keys` over the buckets of the runs: one range scan of the
    primary key per run (UNION ALL), then one aggregate. An OR of the runs' ranges would make
    the planner scan the org's whole index and filter."""
    parts = [
        select(*(key.label(f"k{index}") for index, key in enumerate(keys)))
        .add_columns(*(value.label(f"v{index}") for index, value in enumerate(values)))
        .where(
            *conditions,
            table.c.tier == tier,
            table.c.period_start >= start,
            table.c.period_start < end,
        )
        for tier, start, end in bucket_runs
    ]
    union = union_all(*parts).subquery()
    grouped = [union.c[f"k{index}"] for index in range(len(keys))]
    # As bigint: Postgres sums bigints into numeric, which arrives as Decimal objects.
    totals = [
        cast(func.sum(union.c[f"v{index}"]), BigInteger).label(f"t{index}")
        for index in range(len(values))
    ]
    return select(*grouped, *totals).group_by(*grouped)


def dimension_conditions(table: Any, org_id: str, filters: Any) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [table.c.org_id == org_id]
    if filters.agent_id is not None:
        conditions.append(table.c.agent_id == filters.agent_id)
    if filters.direction is not None:
        conditions.append(table.c.direction == filters.direction)
    if filters.status:
        conditions.append(table.c.status.in_([status.value for status in filters.status]))
    if filters.source is not None:
        conditions.append(
            table.c.source_id.in_(
                select(Source.id).where(Source.org_id == org_id, Source.name == filters.source)
            )
        )
    return conditions


def add_buckets(
    session: Session,
    org_id: str,
    filters: Any,
    group_by: str | None,
    bucket_runs: list[Run],
    tallies: dict[Any, Tally],
    overall: Tally,
) -> None:
    """The buckets' counters into each group's tally (None: not grouped), and their histograms
    into each group's and the overall tally."""
    if not bucket_runs:
        return
    # The whole org's counters hold status, end reason and currency: enough unless an agent,
    # source or direction is filtered or grouped by.
    dimensional = group_by in ("agent", "source", "direction") or any(
        value is not None for value in (filters.agent_id, filters.direction, filters.source)
    )
    table = stats_rollups if dimensional else stats_org_rollups
    group = _group_columns(table, group_by)
    if session.get_bind().dialect.name == "postgresql":
        # The bins of a 90-day org grouped by day are ~10^5 rows: hashed in memory. The runs
        # are short key ranges of mostly cached pages: at the default random_page_cost (4, for
        # disks that seek) the planner read all of stats_rollups for a 90-day window by day.
        session.execute(text("SET LOCAL work_mem = '64MB'"))
        session.execute(text("SET LOCAL random_page_cost = 1.1"))
        # At most ~10^5 rows: two parallel workers only took cores from the server (group_by
        # agent at 1M calls, load ~3 on 2 cores: 97-136 ms with them, 96-112 ms without).
        session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    keys = [table.c.status, table.c.end_reason, table.c.currency, *group]
    counters = [table.c[name] for name in ROLLUP_COUNTERS]
    conditions = dimension_conditions(table, org_id, filters)
    statement = summed(table, keys, counters, conditions, bucket_runs)
    group_of = _grouper(group_by)
    agents = set()
    for row in session.execute(statement).all():
        agents.add(row[3] if group_by == "agent" else None)
        tally = tallies.setdefault(group_of(row[3] if group else None), Tally())
        tally.add_counters((row[0], row[1], row[2]), row[len(keys) :])
    bins = _bins_statement(org_id, filters, group_by, bucket_runs, agents)
    for whole, grouped, metric, counts in _bin_counts(session, bins, grouped=bool(group)):
        tally = overall if whole else tallies.setdefault(group_of(grouped), Tally())
        tally.add_bins(metric, counts)


def _bins_statement(
    org_id: str, filters: Any, group_by: str | None, bucket_runs: list[Run], agents: set[Any]
) -> Select[Any]:
    """(group, metric, bin, count) summed over the runs, from the narrowest bins that answer:
    the whole org's (no dimension filtered or grouped by), per agent (the agent is the only
    one), else per dimensions."""
    table: Any = stats_bins
    # As dimension_conditions reads the filters: an empty `source=` filters on the name ''.
    others = (
        filters.direction is not None
        or bool(filters.status)
        or filters.source is not None
        or group_by in (DIMENSION_GROUPS.keys() - {"agent"})
    )
    if others:
        conditions = dimension_conditions(table, org_id, filters)
        conditions.append(table.c.scope == BY_DIMENSIONS)
    elif filters.agent_id is not None or group_by == "agent":
        table = stats_agent_bins
        chosen = [filters.agent_id] if filters.agent_id is not None else sorted(agents)
        # One range scan per agent and run: its key is org, agent, tier, period.
        conditions = [table.c.org_id == org_id, table.c.agent_id.in_(chosen)]
    else:
        conditions = [table.c.org_id == org_id, table.c.scope == WHOLE_ORG]
    keys = [*_group_columns(table, group_by), table.c.metric, table.c.bin]
    return summed(table, keys, [table.c["count"]], conditions, bucket_runs)


def _bin_counts(
    session: Session, statement: Select[Any], grouped: bool
) -> Iterator[tuple[bool, Any, int, dict[int, int]]]:
    """(whole window?, group, metric, {bin: count}): each group's histogram of each metric and,
    when grouped, the whole window's. Postgres gathers them into arrays: a few hundred rows
    where ~10^5 bin rows through Python took ~200 ms of CPU (a 90-day org by day)."""
    sums = statement.cte("sums")
    group, (metric, bin, count) = list(sums.c)[: int(grouped)], list(sums.c)[int(grouped) :]
    if session.get_bind().dialect.name != "postgresql":
        wholes: dict[int, dict[int, int]] = {}
        for row in session.execute(select(sums).where(count != 0)).all():
            metric_of, bin_of, counted = row[-3:]
            if grouped:
                yield False, row[0], metric_of, {bin_of: int(counted)}
            whole = wholes.setdefault(metric_of, {})
            whole[bin_of] = whole.get(bin_of, 0) + int(counted)
        yield from ((True, None, metric_of, whole) for metric_of, whole in wholes.items())
        return
    parts = [
        select(
            literal(False),
            group[0] if group else null(),
            metric,
            func.array_agg(bin),
            func.array_agg(count),
        )
        .where(count != 0)
        .group_by(*group, metric)
    ]
    if grouped:
        summed_bins = select(metric, bin, func.sum(count)).group_by(metric, bin).subquery()
        whole_metric, whole_bin, whole_count = list(summed_bins.c)
        parts.append(
            select(
                literal(True),
                null(),
                whole_metric,
                func.array_agg(whole_bin),
                func.array_agg(cast(whole_count, BigInteger)),
            )
            .where(whole_count != 0)
            .group_by(whole_metric)
        )
    for whole_window, key, metric_of, bins, counts in session.execute(union_all(*parts)):
        yield whole_window or not grouped, key, metric_of, dict(zip(bins, counts, strict=True))


def add_edges(
    session: Session,
    where: list[ColumnElement[bool]],
    group_by: str | None,
    edges: list[tuple[datetime, datetime]],
    tallies: dict[Any, Tally],
    overall: Tally,
) -> None:
    """The calls starting in the edges (parts of an hour), as the buckets would count them:
    into their group's tally, and their values into the overall tally's histograms too."""
    if not edges:
        return
    within = or_(*(and_(Call.started_at >= start, Call.started_at < end) for start, end in edges))
    columns = [Call.__table__.c[name] for name in COLUMNS]
    for row in session.execute(select(*columns).where(*where, within)):
        share = contribution(row._mapping)
        assert share is not None  # a row
        tallies.setdefault(_share_group(group_by, share), Tally()).add_counters(
            (share.dimensions[3], share.dimensions[4], share.dimensions[5]), share.counters
        )
        for metric, bin in share.bins:
            tallies[_share_group(group_by, share)].add_bin(metric, bin, 1)
            overall.add_bin(metric, bin, 1)


def _group_columns(table: Any, group_by: str | None) -> list[Any]:
    if group_by in DIMENSION_GROUPS:
        return [table.c[DIMENSION_GROUPS[group_by]]]
    if group_by in TIME_GROUPS:
        return [table.c.period_start]
    return []


def _grouper(group_by: str | None) -> Callable[[Any], Any]:
    """A bucket's group key from its grouping column's value (remembered: a few hundred)."""
    keys: dict[Any, Any] = {}

    def group_of(value: Any) -> Any:
        if group_by is None:
            return None
        if value not in keys:
            keys[value] = time_key(group_by, _aware(value)) if group_by in TIME_GROUPS else value
        return keys[value] or None

    return group_of


def _share_group(group_by: str | None, share: Contribution) -> Any:
    if group_by is None:
        return None
    if group_by in TIME_GROUPS:
        return time_key(group_by, share.started_at)
    index = list(DIMENSION_GROUPS).index(group_by)
    return share.dimensions[index] or None


def _group_start(group_by: str, at: datetime) -> datetime:
    if group_by == "hour":
        return period_start(1, at)
    day = period_start(24, at)
    return day - timedelta(days=day.weekday()) if group_by == "week" else day


def _ceil_hour(at: datetime) -> datetime:
    start = period_start(1, at)
    return start if start == at else start + HOUR


def _aware(value: datetime | date) -> datetime:
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
