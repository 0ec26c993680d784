"""Stats: the histogram bins per agent (stats_agent_bins), the agent before the period in the key.

Filled from stats_bins' by-dimensions scope, summed over source, direction and status: the same
counts `callwatch stats rebuild` would add, in one statement (a minute or so at a million calls).
Run it with the workers stopped, as any upgrade.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

from callwatch.tables import BY_DIMENSIONS, UTCDateTime

revision = "0017"
# The lead chains it after 0016 at merge; 0014 is this branch's head before it.
down_revision = "0014"
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
        sa.PrimaryKeyConstraint("org_id", "agent_id", "tier", "period_start", "metric", "bin"),
    )
    op.execute(
        "INSERT INTO stats_agent_bins (org_id, agent_id, tier, period_start, metric, bin, count) "
        "SELECT org_id, agent_id, tier, period_start, metric, bin, SUM(count) FROM stats_bins "
        f"WHERE scope = {BY_DIMENSIONS} "
        "GROUP BY org_id, agent_id, tier, period_start, metric, bin HAVING SUM(count) != 0"
    )


def downgrade() -> None:
    op.drop_table("stats_agent_bins")
