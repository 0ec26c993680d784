"""Inbox: a quarantine for events that cannot be applied, instead of marking them done.

`quarantined_at` (with the reason in `last_error`) marks an event a worker could not apply,
alone, or one whose deliveries ran out; such a row is neither pending nor applied. The pending
index leaves quarantined rows out (the sweeper never sends them again); a partial index on the
quarantined rows serves the API's list and the gauge.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PENDING = sa.text("processed_at IS NULL AND quarantined_at IS NULL")
QUARANTINED = sa.text("quarantined_at IS NOT NULL")
OLD_PENDING = sa.text("processed_at IS NULL")


def upgrade() -> None:
    op.add_column("inbox", sa.Column("quarantined_at", sa.DateTime(timezone=True)))
    op.drop_index("ix_inbox_pending", table_name="inbox")
    op.create_index(
        "ix_inbox_pending", "inbox", ["due_at"], postgresql_where=PENDING, sqlite_where=PENDING
    )
    op.create_index(
        "ix_inbox_quarantined",
        "inbox",
        ["org_id", "quarantined_at"],
        postgresql_where=QUARANTINED,
        sqlite_where=QUARANTINED,
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_quarantined", table_name="inbox")
    op.drop_index("ix_inbox_pending", table_name="inbox")
    op.create_index(
        "ix_inbox_pending",
        "inbox",
        ["due_at"],
        postgresql_where=OLD_PENDING,
        sqlite_where=OLD_PENDING,
    )
    # Not in batch mode: on SQLite that rebuilds the table, and dropping the old one would
    # cascade to the pending joins; SQLite (3.35+) drops a column in place.
    op.drop_column("inbox", "quarantined_at")
