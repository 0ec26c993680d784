"""Alert windows: calls by (org, assembled_at), the time a window rule's calls are chosen by.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_calls_org_assembled", "calls", ["org_id", "assembled_at"])


def downgrade() -> None:
    op.drop_index("ix_calls_org_assembled", table_name="calls")
