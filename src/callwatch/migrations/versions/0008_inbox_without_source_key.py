"""Inbox on Postgres: no foreign key to its source; checking it took ~13 % of a batch's INSERT.

Intake stores only rows of a source it has just looked up, and sources are never deleted.
SQLite keeps the key: dropping it there means rebuilding the table, whose DROP would cascade
to the pending joins, and the embedded database is not where webhooks arrive by the thousand.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("inbox_source_id_fkey", "inbox", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(
            "inbox_source_id_fkey", "inbox", "sources", ["source_id"], ["id"], ondelete="CASCADE"
        )
