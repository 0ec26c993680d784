"""API keys: a name, and when each was last used.

Keys from before are named "first key" (the server default, as for a key inserted without a
name); `last_used_at` stays NULL until the key is next used.

Revision ID: 0011
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("name", sa.String(200), nullable=False, server_default="first key"),
    )
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # SQLite (3.35+) drops a column in place; nothing refers to api_keys.
    op.drop_column("api_keys", "last_used_at")
    op.drop_column("api_keys", "name")
