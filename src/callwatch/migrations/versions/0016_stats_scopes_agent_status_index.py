"""Stats: histogram bins per agent (stats_agent_bins, the agent before the period in the key) and
the whole org's counters (stats_org_rollups, less agent, source and direction).

Filled from stats_bins' by-dimensions scope and from stats_rollups, summed over the dimensions
each leaves out: what `callwatch stats rebuild` would add, one statement each (a minute or two
at a million calls). And an index for an agent's calls of one status in a window (the list API's
agent + status + dates). Run it with the workers stopped, as any upgrade.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

from callwatch.tables import (
    AGENT_BIN_KEY,
    BY_DIMENSIONS,
    ORG_ROLLUP_DIMENSIONS,
    ROLLUP_COUNTERS,
    UTCDateTime,
)

revision = "0016"
# After 0016, which other branches add; on this branch alone (head 0014) set "0014" to run it.
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stats_agent_bins",
        sa.Column("org_id", sa.String(40), sa.ForeignKey("orgs.id", ondelete="CASCADE")),
        sa.Column("agent_id", sa.String(200)),
        sa.Column("tier", sa.SmallInteger),
        sa.Column("period_start", UTCDateTime),
        sa.Column("metric", sa.SmallInteger),
        sa.Column("bin", sa.Integer),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(*AGENT_BIN_KEY, postgresql_include=["count"]),
    )
    op.execute(
        "INSERT INTO stats_agent_bins (org_id, agent_id, tier, period_start, metric, bin, count) "
        "SELECT org_id, agent_id, tier, period_start, metric, bin, SUM(count) FROM stats_bins "
        f"WHERE scope = {BY_DIMENSIONS} "
        "GROUP BY org_id, agent_id, tier, period_start, metric, bin HAVING SUM(count) != 0"
    )

    op.create_table(
        "stats_org_rollups",
        sa.Column("org_id", sa.String(40), sa.ForeignKey("orgs.id", ondelete="CASCADE")),
        sa.Column("tier", sa.SmallInteger),
        sa.Column("period_start", UTCDateTime),
        *(sa.Column(name, sa.String(200)) for name in ORG_ROLLUP_DIMENSIONS),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in ROLLUP_COUNTERS),
        sa.PrimaryKeyConstraint("org_id", "tier", "period_start", *ORG_ROLLUP_DIMENSIONS),
    )
    key = ", ".join(("org_id", "tier", "period_start", *ORG_ROLLUP_DIMENSIONS))
    sums = ", ".join(f"SUM({name})" for name in ROLLUP_COUNTERS)
    op.execute(
        f"INSERT INTO stats_org_rollups ({key}, {', '.join(ROLLUP_COUNTERS)}) "
        f"SELECT {key}, {sums} FROM stats_rollups GROUP BY {key}"
    )

    op.create_index(
        "ix_calls_org_agent_status_started",
        "calls",
        ["org_id", "agent_id", "status", "started_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_calls_org_agent_status_started", "calls")
    op.drop_table("stats_org_rollups")
    op.drop_table("stats_agent_bins")
