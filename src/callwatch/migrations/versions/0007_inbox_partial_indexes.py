"""Inbox: partial indexes, so a webhook's INSERT maintains less.

The pending index keeps only unprocessed rows (the sweeper's and the backlog gauge's look-ups,
all `processed_at IS NULL`), the call_id index only rows that have a call.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


PENDING = sa.text("processed_at IS NULL")
JOINED = sa.text("call_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_inbox_pending", table_name="inbox")
    op.drop_index("ix_inbox_call_id", table_name="inbox")
    op.create_index(
        "ix_inbox_pending", "inbox", ["due_at"], postgresql_where=PENDING, sqlite_where=PENDING
    )
    op.create_index(
        "ix_inbox_call_id", "inbox", ["call_id"], postgresql_where=JOINED, sqlite_where=JOINED
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_call_id", table_name="inbox")
    op.drop_index("ix_inbox_pending", table_name="inbox")
    op.create_index("ix_inbox_call_id", "inbox", ["call_id"])
    op.create_index("ix_inbox_pending", "inbox", ["processed_at", "due_at"])
