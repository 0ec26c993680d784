"""Query columns on calls: customer number, answer time, cost components, latency figures.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import callwatch.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_FLOATS = (
    "billed_duration_s",
    "cost_llm",
    "cost_stt",
    "cost_tts",
    "cost_telephony",
    "cost_platform",
    "latency_turn_p50_ms",
    "latency_turn_p95_ms",
    "time_to_first_word_ms",
)


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch_op:
        batch_op.add_column(sa.Column("customer_number", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("answered_at", callwatch.tables.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("cost_currency", sa.String(length=8), nullable=True))
        for name in _FLOATS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch_op.drop_index("ix_calls_org_started")
        batch_op.create_index("ix_calls_org_started", ["org_id", "started_at", "id"], unique=False)
        batch_op.create_index(
            "ix_calls_org_agent_started", ["org_id", "agent_id", "started_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch_op:
        batch_op.drop_index("ix_calls_org_agent_started")
        batch_op.drop_index("ix_calls_org_started")
        batch_op.create_index("ix_calls_org_started", ["org_id", "started_at"], unique=False)
        for name in reversed(_FLOATS):
            batch_op.drop_column(name)
        batch_op.drop_column("cost_currency")
        batch_op.drop_column("answered_at")
        batch_op.drop_column("customer_number")
