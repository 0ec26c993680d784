"""Indexes for the query API at a million calls: status, covering stats columns, phone search.

Revision ID: 0003
Revises: 0002
"""

import logging

from alembic import op
from sqlalchemy import text

from callwatch.tables import STATS_COLUMNS, TRIGRAM_COLUMNS

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    include = {"postgresql_include": list(STATS_COLUMNS)} if postgres else {}
    with op.batch_alter_table("calls") as batch_op:
        batch_op.drop_index("ix_calls_org_started")
        batch_op.drop_index("ix_calls_org_agent_started")
        batch_op.create_index("ix_calls_org_started", ["org_id", "started_at", "id"], **include)
        batch_op.create_index(
            "ix_calls_org_agent_started", ["org_id", "agent_id", "started_at", "id"], **include
        )
        batch_op.create_index(
            "ix_calls_org_status_started", ["org_id", "status", "started_at", "id"]
        )
    if postgres and _trigrams_available():
        for column in TRIGRAM_COLUMNS:
            op.create_index(
                f"ix_calls_{column}_trgm",
                "calls",
                [column],
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
            )


def _trigrams_available() -> bool:
    """pg_trgm makes `customer_phone` and `search` index lookups; without it they still work."""
    connection = op.get_bind()
    savepoint = connection.begin_nested()
    try:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except Exception as exc:  # a role without CREATE on the database: go on without
        savepoint.rollback()
        log.warning("pg_trgm not available (%s); phone searches will scan", exc)
        return False
    savepoint.commit()
    return True


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        for column in TRIGRAM_COLUMNS:
            op.execute(f"DROP INDEX IF EXISTS ix_calls_{column}_trgm")
    with op.batch_alter_table("calls") as batch_op:
        batch_op.drop_index("ix_calls_org_status_started")
        batch_op.drop_index("ix_calls_org_agent_started")
        batch_op.drop_index("ix_calls_org_started")
        batch_op.create_index("ix_calls_org_started", ["org_id", "started_at", "id"])
        batch_op.create_index("ix_calls_org_agent_started", ["org_id", "agent_id", "started_at"])
