"""Events waiting for the call they join (an analysis that arrives before its call).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox_joins",
        sa.Column(
            "inbox_id",
            sa.String(40),
            sa.ForeignKey("inbox.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("join_key", sa.String(200), primary_key=True),
        sa.Column("org_id", sa.String(40), nullable=False),
    )
    op.create_index("ix_inbox_joins_key", "inbox_joins", ["org_id", "join_key"])


def downgrade() -> None:
    op.drop_index("ix_inbox_joins_key", "inbox_joins")
    op.drop_table("inbox_joins")
