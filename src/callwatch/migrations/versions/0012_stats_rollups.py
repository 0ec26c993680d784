"""Stats rollups: per-bucket counts and sums (stats_rollups) and histogram bins (stats_bins).

The upgrade fills them from the calls already stored, as `callwatch stats rebuild` does (in
batches; a few minutes for a million calls): run it with the workers stopped, as any upgrade.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

from callwatch.calls import rollups
from callwatch.tables import (
    BIN_DIMENSIONS,
    ROLLUP_COUNTERS,
    ROLLUP_DIMENSIONS,
    UTCDateTime,
    stats_bins,
    stats_rollups,
)

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _key() -> list[sa.Column[object]]:
    return [
        sa.Column("org_id", sa.String(40), sa.ForeignKey("orgs.id", ondelete="CASCADE")),
        sa.Column("tier", sa.SmallInteger),
        sa.Column("period_start", UTCDateTime),
    ]


def upgrade() -> None:
    op.create_table(
        "stats_rollups",
        *_key(),
        *(sa.Column(name, sa.String(200)) for name in ROLLUP_DIMENSIONS),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in ROLLUP_COUNTERS),
        sa.PrimaryKeyConstraint("org_id", "tier", "period_start", *ROLLUP_DIMENSIONS),
    )
    op.create_table(
        "stats_bins",
        sa.Column("org_id", sa.String(40), sa.ForeignKey("orgs.id", ondelete="CASCADE")),
        sa.Column("scope", sa.SmallInteger),
        *_key()[1:],
        *(sa.Column(name, sa.String(200)) for name in BIN_DIMENSIONS),
        sa.Column("metric", sa.SmallInteger),
        sa.Column("bin", sa.Integer),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id", "scope", "tier", "period_start", *BIN_DIMENSIONS, "metric", "bin"
        ),
    )
    session = Session(bind=op.get_bind())
    after = ""
    # The tables of this revision: later ones (0016's stats_agent_bins) fill themselves.
    tables = (stats_rollups, stats_bins)
    while added := rollups.add_batch(session, None, after, 5_000, tables):
        after = added[-1]
    session.flush()


def downgrade() -> None:
    op.drop_table("stats_bins")
    op.drop_table("stats_rollups")
