"""Stats rollups: what each call adds to the buckets `GET /api/stats` reads (docs/design.md §stats).

A call's share is a pure function of its row, `contribution`; every write of a call's stats
columns goes through `move(session, [(before, after)])` in the same transaction, which adds the
difference to each bucket with `col = col + excluded.col` upserts. So a call that changes
(enrichment, a late event, a replay) moves its share from its old buckets to its new ones and
never counts twice, two workers adding to one bucket lose nothing, and a deletion (issue 25) is
`move(session, [(contribution(row), None)])`. `rebuild` recomputes them from the calls.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Table, TextClause, delete, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.orm import Session

from callwatch.db import json_recordset
from callwatch.model.histogram import bin_of
from callwatch.tables import (
    AGENT_BIN_KEY,
    BIN_DIMENSIONS,
    BY_DIMENSIONS,
    ORG_ROLLUP_DIMENSIONS,
    ROLLUP_COUNTERS,
    ROLLUP_DIMENSIONS,
    WHOLE_ORG,
    Call,
    stats_agent_bins,
    stats_bins,
    stats_org_rollups,
    stats_rollups,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Bucket lengths in hours, shortest first: an hour, a day, 4, 16 and 64 days. Any window is
# tiled by a few dozen buckets at most (`query/rollup_reads.cover`).
TIERS = (1, 24, 96, 384, 1536)
COST_PARTS = ("total", "llm", "stt", "tts", "telephony", "platform")
# (metric, the call's column), in the order of tables.ROLLUP_METRICS.
METRIC_COLUMNS = (
    ("duration_s", "duration_s"),
    ("turn_latency_p50_ms", "latency_turn_p50_ms"),
    ("turn_latency_p95_ms", "latency_turn_p95_ms"),
    ("time_to_first_word_ms", "time_to_first_word_ms"),
)
# What `contribution` reads from a call's row.
COLUMNS = (
    "org_id",
    "started_at",
    "agent_id",
    "source_id",
    "direction",
    "status",
    "end_reason",
    "cost_currency",
    "answered_at",
    *(f"cost_{part}" for part in COST_PARTS),
    *(column for _, column in METRIC_COLUMNS),
)
MICRO = 1_000_000
_CREATED = "rollups: calls created"  # session.info key
BIN_KEY = ("org_id", "scope", "tier", "period_start", *BIN_DIMENSIONS, "metric", "bin")


@dataclass(frozen=True)
class Contribution:
    """One call's share of the rollups: its bucket and what it adds there."""

    org_id: str
    started_at: datetime
    dimensions: tuple[str, ...]  # tables.ROLLUP_DIMENSIONS' values, '' for none
    counters: tuple[int, ...]  # tables.ROLLUP_COUNTERS' values
    bins: tuple[tuple[int, int], ...]  # (metric index, histogram bin) of each value it has


def micro(value: float) -> int:
    return round(value * MICRO)


def contribution(row: Mapping[Any, Any] | None) -> Contribution | None:
    """The call's share, from its stats columns (COLUMNS); None for no call (not yet, or gone)."""
    if row is None:
        return None
    costed = row["cost_total"] is not None
    counters = [1, int(row["answered_at"] is not None), int(costed)]
    counters += [micro(row[f"cost_{part}"] or 0.0) if costed else 0 for part in COST_PARTS]
    bins = []
    for index, (_, column) in enumerate(METRIC_COLUMNS):
        value = row[column]
        counters += [0, 0] if value is None else [1, micro(value)]
        if value is not None:
            bins.append((index, bin_of(value)))
    dimensions = tuple(
        row["cost_currency" if name == "currency" else name] or "" for name in ROLLUP_DIMENSIONS
    )
    return Contribution(
        org_id=row["org_id"],
        started_at=row["started_at"],
        dimensions=dimensions,
        counters=tuple(counters),
        bins=tuple(bins),
    )


def period_start(tier: int, at: datetime) -> datetime:
    hours = int((at - EPOCH).total_seconds() // 3600)
    return EPOCH + timedelta(hours=hours - hours % tier)


def move(
    session: Session,
    changes: Iterable[tuple[Contribution | None, Contribution | None]],
    tables: Sequence[Table] | None = None,
) -> None:
    """Take each `before` away from its buckets and add each `after`, in one upsert per table
    (of `tables`, all by default: a migration passes those of its own revision).

    The keys go in sorted: two transactions adding to the same buckets wait for each other's
    row locks in the same order, never deadlock.
    """
    counts: dict[tuple[Any, ...], list[int]] = {}
    org_counts: dict[tuple[Any, ...], list[int]] = {}
    bins: dict[tuple[Any, ...], int] = {}
    agent_bins: dict[tuple[Any, ...], int] = {}
    for before, after in changes:
        if before == after:
            continue
        for sign, share in ((-1, before), (1, after)):
            if share is not None:
                _add((counts, org_counts), bins, agent_bins, share, sign)
    rows = {
        stats_rollups: lambda: _rows(counts, ROLLUP_DIMENSIONS, ROLLUP_COUNTERS),
        stats_org_rollups: lambda: _rows(org_counts, ORG_ROLLUP_DIMENSIONS, ROLLUP_COUNTERS),
        stats_bins: lambda: _bin_rows(bins, BIN_KEY),
        stats_agent_bins: lambda: _bin_rows(agent_bins, AGENT_BIN_KEY),
    }
    for table in ROLLUP_TABLES if tables is None else tables:
        _upsert(session, table, rows[table]())


def _bin_rows(bins: dict[tuple[Any, ...], int], names: Sequence[str]) -> list[dict[str, Any]]:
    return [
        dict(zip(names, key, strict=True)) | {"count": count}
        for key, count in sorted(bins.items())
        if count
    ]


def _add(
    counts: tuple[dict[tuple[Any, ...], list[int]], dict[tuple[Any, ...], list[int]]],
    bins: dict[tuple[Any, ...], int],
    agent_bins: dict[tuple[Any, ...], int],
    share: Contribution,
    sign: int,
) -> None:
    scopes = (
        (BY_DIMENSIONS, share.dimensions[: len(BIN_DIMENSIONS)]),
        (WHOLE_ORG, ("",) * len(BIN_DIMENSIONS)),
    )
    for tier in TIERS:
        start = period_start(tier, share.started_at)
        org_dimensions = share.dimensions[-len(ORG_ROLLUP_DIMENSIONS) :]
        for kept, key in zip(
            counts,
            (
                (share.org_id, tier, start, *share.dimensions),
                (share.org_id, tier, start, *org_dimensions),
            ),
            strict=True,
        ):
            totals = kept.setdefault(key, [0] * len(ROLLUP_COUNTERS))
            for index, value in enumerate(share.counters):
                totals[index] += sign * value
        for metric, bin in share.bins:
            for scope, dimensions in scopes:
                bin_key = (share.org_id, scope, tier, start, *dimensions, metric, bin)
                bins[bin_key] = bins.get(bin_key, 0) + sign
            agent_key = (share.org_id, share.dimensions[0], tier, start, metric, bin)
            agent_bins[agent_key] = agent_bins.get(agent_key, 0) + sign


def _rows(
    counts: dict[tuple[Any, ...], list[int]], dimensions: Sequence[str], counters: Sequence[str]
) -> list[dict[str, Any]]:
    names = ("org_id", "tier", "period_start", *dimensions)
    return [
        dict(zip(names, key, strict=True)) | dict(zip(counters, totals, strict=True))
        for key, totals in sorted(counts.items())
        if any(totals)
    ]


def _upsert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        # The rows as one JSON document (as calls.save writes calls): one short statement,
        # where an executemany of thousands of rows costs several times the CPU.
        session.execute(_PG_UPSERTS[table.name], {"rows": to_json(rows).decode()})
        return
    statement = sqlite.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key.columns],
        set_={name: table.c[name] + statement.excluded[name] for name in _added(table)},
    )
    session.execute(statement, rows)


def _added(table: Table) -> list[str]:
    return [column.name for column in table.columns if not column.primary_key]


def _pg_upsert(table: Table) -> TextClause:
    names = [column.name for column in table.columns]
    types = {column.name: column.type.compile(dialect=_PG) for column in table.columns}
    key = ", ".join(column.name for column in table.primary_key.columns)
    added = ", ".join(f"{name} = {table.name}.{name} + excluded.{name}" for name in _added(table))
    return text(
        f"INSERT INTO {table.name} ({', '.join(names)}) "
        f"SELECT {', '.join(f'r.{name}' for name in names)} FROM {json_recordset(':rows', types)} "
        f"ON CONFLICT ({key}) DO UPDATE SET {added}"
    )


_PG = PGDialect()  # type: ignore[no-untyped-call]
ROLLUP_TABLES = (stats_rollups, stats_org_rollups, stats_bins, stats_agent_bins)
_PG_UPSERTS = {table.name: _pg_upsert(table) for table in ROLLUP_TABLES}


def created(session: Session, call_ids: Iterable[str]) -> None:
    """Calls inserted by this transaction: in no rollup yet, whatever their rows say."""
    session.info.setdefault(_CREATED, set()).update(call_ids)


def shares_of(session: Session, call_ids: Sequence[str]) -> dict[str, Contribution | None]:
    """The calls' shares in the rollups now: their rows' as stored (lock the rows first), or
    None for those inserted by this transaction (`created`)."""
    columns = [Call.__table__.c[name] for name in COLUMNS]
    rows = session.execute(select(Call.__table__.c.id, *columns).where(Call.id.in_(call_ids)))
    shares = {row.id: contribution(row._mapping) for row in rows}
    new: set[str] = session.info.get(_CREATED, set())
    for call_id in new.intersection(call_ids):
        shares[call_id] = None
    # Once a new call is saved, its share is in the rollups; a later save reads its row.
    new.difference_update(call_ids)
    return shares


def share_of(call: Call) -> Contribution | None:
    """The share of a call's row as it is in memory (its changes not yet written)."""
    return contribution({name: getattr(call, name) for name in COLUMNS})


def forget(session: Session, org_id: str | None = None) -> None:
    """Drop the org's (or every org's) rollups: the first step of a rebuild."""
    for table in ROLLUP_TABLES:
        statement = delete(table)
        if org_id is not None:
            statement = statement.where(table.c.org_id == org_id)
        session.execute(statement)


def add_batch(
    session: Session,
    org_id: str | None,
    after: str,
    size: int,
    tables: Sequence[Table] | None = None,
) -> list[str]:
    """Add the next `size` calls (in id order, after the id `after`) to the rollups: their ids.

    A rebuild is `forget` then `add_batch` until it returns none, each in its own transaction
    (bounded work per transaction). Run it while the workers are stopped: a call stored between
    two batches would be counted as it was when its batch read it.
    """
    columns = [Call.__table__.c[name] for name in COLUMNS]
    statement = select(Call.__table__.c.id, *columns).where(Call.id > after)
    if org_id is not None:
        statement = statement.where(Call.org_id == org_id)
    rows = session.execute(statement.order_by(Call.id).limit(size)).all()
    move(session, [(None, contribution(row._mapping)) for row in rows], tables)
    return [row.id for row in rows]
