"""The stats rollups' tables (calls/rollups.py keeps them, query/rollup_reads.py reads them)."""

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
)

from callwatch.tables.base import Base, UTCDateTime

# Stats rollups (calls/rollups.py; docs/design.md §stats): what every call adds to its buckets.
# A bucket is (org, tier, period_start, dimensions); tier is the bucket's length in hours (hour,
# day, 4, 16 and 64 days, aligned to 1970-01-01) and a dimension that a call has not is ''.
# Sums are integers in millionths (of a currency unit, a second, a millisecond): adding and
# taking away a call leaves them exactly as they were, as floats would not.
ROLLUP_DIMENSIONS = ("agent_id", "source_id", "direction", "status", "end_reason", "currency")
ROLLUP_METRICS = (
    "duration_s",
    "turn_latency_p50_ms",
    "turn_latency_p95_ms",
    "time_to_first_word_ms",
)
ROLLUP_COUNTERS = (
    "calls",
    "answered",
    "costed",
    *(f"cost_{part}" for part in ("total", "llm", "stt", "tts", "telephony", "platform")),
    *(f"{metric}_{part}" for metric in ROLLUP_METRICS for part in ("count", "sum")),
)
# The whole org's counters: the rollups' less agent, source and direction, which stats without
# those filters and groupings read (~30 rows a bucket where stats_rollups holds ~800).
ORG_ROLLUP_DIMENSIONS = ROLLUP_DIMENSIONS[3:]
stats_org_rollups = Table(
    "stats_org_rollups",
    Base.metadata,
    Column("org_id", ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    Column("tier", SmallInteger, primary_key=True),
    Column("period_start", UTCDateTime, primary_key=True),
    *(Column(name, String(200), primary_key=True) for name in ORG_ROLLUP_DIMENSIONS),
    *(Column(name, BigInteger, nullable=False) for name in ROLLUP_COUNTERS),
)

# The histogram bins' dimensions: the rollups' less end_reason and currency (filters on those
# read the records). Each call's values are in two scopes: by those dimensions, and the whole
# org's (dimensions ''), which stats without those filters and groupings read: far fewer rows.
BIN_DIMENSIONS = ROLLUP_DIMENSIONS[:4]
BY_DIMENSIONS, WHOLE_ORG = 0, 1  # stats_bins.scope

stats_rollups = Table(
    "stats_rollups",
    Base.metadata,
    Column("org_id", ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    Column("tier", SmallInteger, primary_key=True),
    Column("period_start", UTCDateTime, primary_key=True),
    *(Column(name, String(200), primary_key=True) for name in ROLLUP_DIMENSIONS),
    *(Column(name, BigInteger, nullable=False) for name in ROLLUP_COUNTERS),
)

stats_bins = Table(
    "stats_bins",
    Base.metadata,
    Column("org_id", ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    Column("scope", SmallInteger, primary_key=True),  # BIN_SCOPES
    Column("tier", SmallInteger, primary_key=True),
    Column("period_start", UTCDateTime, primary_key=True),
    *(Column(name, String(200), primary_key=True) for name in BIN_DIMENSIONS),
    Column("metric", SmallInteger, primary_key=True),  # index into ROLLUP_METRICS
    Column("bin", Integer, primary_key=True),  # model/histogram.py
    Column("count", BigInteger, nullable=False),
)

# The histogram bins per agent (all its calls, '' for none), the agent before the period in the
# key: one agent's window is one range scan per run of buckets, and `group_by=agent` one per
# agent and run, where stats_bins' key would scan every agent's rows of each bucket.
# The count rides in the key's index (INCLUDE): a 90-day window by agent reads ~10^5 bins, and
# fetching each from the heap cost ~25,000 page reads where the index alone needs ~2,000.
AGENT_BIN_KEY = ("org_id", "agent_id", "tier", "period_start", "metric", "bin")
stats_agent_bins = Table(
    "stats_agent_bins",
    Base.metadata,
    Column("org_id", ForeignKey("orgs.id", ondelete="CASCADE")),
    Column("agent_id", String(200)),
    Column("tier", SmallInteger),
    Column("period_start", UTCDateTime),
    Column("metric", SmallInteger),
    Column("bin", Integer),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint(*AGENT_BIN_KEY, postgresql_include=["count"]),
)
