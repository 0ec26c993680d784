"""Sources: enabled, soft-deleted, and a token and a secret that rotate with an overlap.

A deleted source stays (`deleted_at`): its calls keep their foreign key and their source's name.
After a rotation the previous webhook token, and the previous callwatch-generated secret
(sealed like the credentials), keep working until their `_until`. Columns are added in place
(no batch mode): rebuilding `sources` on SQLite would cascade its DROP to the calls.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = (
    "enabled",
    "deleted_at",
    "updated_at",
    "previous_token",
    "previous_token_until",
    "previous_secret",
    "previous_secret_until",
)


def upgrade() -> None:
    op.add_column(
        "sources",
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.text("true")),
    )
    op.add_column("sources", sa.Column("deleted_at", sa.DateTime(timezone=True)))
    op.add_column("sources", sa.Column("updated_at", sa.DateTime(timezone=True)))
    op.add_column("sources", sa.Column("previous_token", sa.String(64)))
    op.add_column("sources", sa.Column("previous_token_until", sa.DateTime(timezone=True)))
    op.add_column("sources", sa.Column("previous_secret", sa.Text()))
    op.add_column("sources", sa.Column("previous_secret_until", sa.DateTime(timezone=True)))
    op.create_index("ix_sources_previous_token", "sources", ["previous_token"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_sources_previous_token", table_name="sources")
    for column in reversed(COLUMNS):
        op.drop_column("sources", column)
