"""Own the data (issue 25): per-org data settings, and the recording archive.

`org_settings`: an org's retention, archive and redaction choices (no row: the defaults).
`recording_archives`: one row per call whose recording is (to be) copied into the org's
recording store, with its files' sizes and digests and the archive task's lease and retries.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "org_settings",
        sa.Column(
            "org_id",
            sa.String(40),
            sa.ForeignKey("orgs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("retention_days", sa.Integer()),
        sa.Column("raw_event_retention_days", sa.Integer()),
        sa.Column("archive_recordings", sa.Boolean(), nullable=False),
        sa.Column("redact_pii", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "recording_archives",
        sa.Column(
            "call_id",
            sa.String(40),
            sa.ForeignKey("calls.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("dual_url", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text()),
        sa.Column("key", sa.Text()),
        sa.Column("bytes", sa.BigInteger()),
        sa.Column("sha256", sa.String(64)),
        sa.Column("content_type", sa.String(100)),
        sa.Column("dual_key", sa.Text()),
        sa.Column("dual_bytes", sa.BigInteger()),
        sa.Column("dual_sha256", sa.String(64)),
        sa.Column("dual_content_type", sa.String(100)),
        sa.Column("archived_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_recording_archives_due", "recording_archives", ["status", "next_at"])
    op.create_index("ix_recording_archives_org_id", "recording_archives", ["org_id"])


def downgrade() -> None:
    op.drop_index("ix_recording_archives_org_id", table_name="recording_archives")
    op.drop_index("ix_recording_archives_due", table_name="recording_archives")
    op.drop_table("recording_archives")
    op.drop_table("org_settings")
