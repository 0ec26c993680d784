"""Downstream: subscriptions, deliveries and their attempts, alert rules and alerts.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from callwatch.tables import JSONType

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "org_id", sa.String(40), sa.ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("description", sa.String(200)),
        sa.Column("event_types", JSONType, nullable=False),
        sa.Column("filters", JSONType, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("previous_secret", sa.Text),
        _when("previous_secret_until"),
        _when("failing_since"),
        sa.Column("disabled_reason", sa.Text),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
    )
    op.create_index("ix_subscriptions_org_id", "subscriptions", ["org_id"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column(
            "subscription_id",
            sa.String(40),
            sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("event_key", sa.String(200), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        _when("next_attempt_at"),
        _when("lease_until"),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        _when("created_at", nullable=False),
        _when("delivered_at"),
        _when("updated_at", nullable=False),
        sa.UniqueConstraint("subscription_id", "event_key"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["state", "next_attempt_at"])
    op.create_index(
        "ix_deliveries_subscription_created", "deliveries", ["subscription_id", "created_at"]
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "delivery_id",
            sa.String(40),
            sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        _when("started_at", nullable=False),
        sa.Column("duration_ms", sa.Float),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("outcome", sa.String(20), nullable=False),
    )
    op.create_index("ix_delivery_attempts_delivery_id", "delivery_attempts", ["delivery_id"])
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "org_id", sa.String(40), sa.ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("expression", sa.Text),
        sa.Column("window", JSONType),
        sa.Column("agent_id", sa.String(200)),
        sa.Column("source_id", sa.String(40)),
        sa.Column("enabled", sa.Boolean, nullable=False),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
    )
    op.create_index("ix_alert_rules_org_id", "alert_rules", ["org_id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column(
            "rule_id",
            sa.String(40),
            sa.ForeignKey("alert_rules.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("dedupe_key", sa.String(200), nullable=False),
        sa.Column("call_id", sa.String(40)),
        _when("window_start"),
        _when("window_end"),
        sa.Column("value", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("state", sa.String(10), nullable=False),
        _when("triggered_at", nullable=False),
        _when("resolved_at"),
        sa.UniqueConstraint("rule_id", "dedupe_key"),
    )
    op.create_index("ix_alerts_org_triggered", "alerts", ["org_id", "triggered_at"])


def downgrade() -> None:
    for table in ("alerts", "alert_rules", "delivery_attempts", "deliveries", "subscriptions"):
        op.drop_table(table)
