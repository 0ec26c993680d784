"""Subscriptions: a rate limit; deliveries: an index for claiming a subscription's due ones.

`rate_limit` is NULL (no limit) for every subscription from before. A batch of deliveries is one
subscription's due ones, oldest first: `(subscription_id, state, next_attempt_at)` finds them.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

from callwatch.tables import JSONType

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("rate_limit", JSONType, nullable=True))
    op.create_index(
        "ix_deliveries_subscription_due",
        "deliveries",
        ["subscription_id", "state", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_subscription_due", table_name="deliveries")
    op.drop_column("subscriptions", "rate_limit")
