"""Retention and erasure: erasures kept (a number's fingerprint, never the number), where each
org's raw-body purge has reached, and an index to find a deleted call's alerts.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

CALL_ALERT = sa.text("call_id IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "org_id", sa.String(40), sa.ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("number_fingerprint", sa.String(64), nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_erasures_org_created", "erasures", ["org_id", "created_at"])
    op.add_column("org_settings", sa.Column("raw_purged_through", sa.String(40), nullable=True))
    op.create_index(
        "ix_alerts_call_id",
        "alerts",
        ["call_id"],
        postgresql_where=CALL_ALERT,
        sqlite_where=CALL_ALERT,
    )


def downgrade() -> None:
    op.drop_index("ix_alerts_call_id", table_name="alerts")
    op.drop_column("org_settings", "raw_purged_through")
    op.drop_index("ix_erasures_org_created", table_name="erasures")
    op.drop_table("erasures")
