"""The database schema as SQLAlchemy tables; Alembic migrations mirror it. The ORM classes are
here, those of subscriptions and alerts in `downstream`, the stats rollups' tables in `stats`,
what they are made of in `base`: every name is importable from `callwatch.tables`."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from callwatch.tables.base import Base, JSONType, UTCDateTime
from callwatch.tables.downstream import Alert, AlertRule, Delivery, DeliveryAttempt, Subscription
from callwatch.tables.stats import (
    AGENT_BIN_KEY,
    BIN_DIMENSIONS,
    BY_DIMENSIONS,
    ORG_ROLLUP_DIMENSIONS,
    ROLLUP_COUNTERS,
    ROLLUP_DIMENSIONS,
    ROLLUP_METRICS,
    WHOLE_ORG,
    stats_agent_bins,
    stats_bins,
    stats_org_rollups,
    stats_rollups,
)

__all__ = [
    "AGENT_BIN_KEY",
    "BIN_DIMENSIONS",
    "BY_DIMENSIONS",
    "ORG_ROLLUP_DIMENSIONS",
    "ROLLUP_COUNTERS",
    "ROLLUP_DIMENSIONS",
    "ROLLUP_METRICS",
    "WHOLE_ORG",
    "Alert",
    "AlertRule",
    "Base",
    "Delivery",
    "DeliveryAttempt",
    "JSONType",
    "Subscription",
    "UTCDateTime",
    "stats_agent_bins",
    "stats_bins",
    "stats_org_rollups",
    "stats_rollups",
]


class Org(Base):
    __tablename__ = "orgs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime]


class OrgSettings(Base):
    """An org's data settings (migration 0013); an org without a row has the defaults
    (orgs/data_settings.py)."""

    __tablename__ = "org_settings"

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True)
    retention_days: Mapped[int | None] = mapped_column(Integer)
    raw_event_retention_days: Mapped[int | None] = mapped_column(Integer)
    archive_recordings: Mapped[bool] = mapped_column(Boolean)
    redact_pii: Mapped[bool] = mapped_column(Boolean)
    # Inbox rows up to this id (ids sort by time) have had their raw bodies emptied by the
    # retention purge (migration 0015): each purge walks on from here, not from the start.
    raw_purged_through: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime]


class Erasure(Base):
    """The erasure of every call of a phone number (migration 0015), kept to show it was done:
    the number only as a keyed fingerprint (`Vault.fingerprint`), never itself."""

    __tablename__ = "erasures"
    __table_args__ = (Index("ix_erasures_org_created", "org_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    number_fingerprint: Mapped[str] = mapped_column(String(64))
    calls: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str | None] = mapped_column(String(40))  # None: from the command line
    created_at: Mapped[datetime]


FIRST_KEY = (
    "first key"  # the name of a key made without one: an org's first, or one from before 0011
)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), server_default=FIRST_KEY)
    created_at: Mapped[datetime]
    # Written at most once per orgs.keys.LAST_USED_EVERY per key, not on every request.
    last_used_at: Mapped[datetime | None]


class Source(Base):
    __tablename__ = "sources"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        Index("ix_sources_previous_token", "previous_token", unique=True),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(40))
    webhook_token: Mapped[str] = mapped_column(String(64), unique=True)
    settings: Mapped[dict[str, Any]]
    credentials: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    # Migration 0010: management. A deleted source stays (its calls keep their source).
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    deleted_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    # After a rotation the previous token, and the previous secret (sealed), work until then.
    previous_token: Mapped[str | None] = mapped_column(String(64))
    previous_token_until: Mapped[datetime | None]
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None]


_PENDING = text("processed_at IS NULL AND quarantined_at IS NULL")
_JOINED = text("call_id IS NOT NULL")
_QUARANTINED = text("quarantined_at IS NOT NULL")


class InboxEvent(Base):
    """One received webhook event, stored before the 2xx; `processed_at` marks it applied,
    `quarantined_at` (the reason in `last_error`) one that could not be applied."""

    __tablename__ = "inbox"
    # Partial indexes: a webhook's INSERT adds no call_id entry, and the pending index holds
    # only the unprocessed rows the sweeper looks for (bench/README.md).
    __table_args__ = (
        UniqueConstraint("source_id", "dedupe_key"),
        Index("ix_inbox_pending", "due_at", postgresql_where=_PENDING, sqlite_where=_PENDING),
        Index("ix_inbox_call_id", "call_id", postgresql_where=_JOINED, sqlite_where=_JOINED),
        Index(
            "ix_inbox_quarantined",
            "org_id",
            "quarantined_at",
            postgresql_where=_QUARANTINED,
            sqlite_where=_QUARANTINED,
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40))
    # No foreign key on Postgres (migration 0008): its check cost a webhook batch ~13 %.
    source_id: Mapped[str] = mapped_column(String(40))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    provider_call_id: Mapped[str] = mapped_column(String(200))
    event: Mapped[dict[str, Any]]
    raw_body: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime]
    due_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    call_id: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    quarantined_at: Mapped[datetime | None]


class PendingJoin(Base):
    """An applied event waiting for the call it joins (by one of its ids) to arrive."""

    __tablename__ = "inbox_joins"
    __table_args__ = (Index("ix_inbox_joins_key", "org_id", "join_key"),)

    inbox_id: Mapped[str] = mapped_column(
        ForeignKey("inbox.id", ondelete="CASCADE"), primary_key=True
    )
    join_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40))


STATS_COLUMNS = (
    "agent_id",
    "source_id",
    "status",
    "end_reason",
    "answered_at",
    "duration_s",
    "cost_currency",
    "cost_total",
    "cost_llm",
    "cost_stt",
    "cost_tts",
    "cost_telephony",
    "cost_platform",
    "latency_turn_p50_ms",
    "latency_turn_p95_ms",
    "time_to_first_word_ms",
)
TRIGRAM_COLUMNS = ("customer_number", "from_number", "to_number")  # `LIKE '%…%'` lookups


class Call(Base):
    """One call: identity and state from events, plus the assembled record once built."""

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("source_id", "provider_call_id"),
        # Covering on Postgres: stats over a million calls read the index, not the wide rows.
        Index(
            "ix_calls_org_started",
            "org_id",
            "started_at",
            "id",
            postgresql_include=list(STATS_COLUMNS),
        ),
        Index(
            "ix_calls_org_agent_started",
            "org_id",
            "agent_id",
            "started_at",
            "id",
            postgresql_include=list(STATS_COLUMNS),
        ),
        Index("ix_calls_org_status_started", "org_id", "status", "started_at", "id"),
        # An agent's calls of one status in a window: the capped count (10,001 entries) of a
        # busy agent read ~2,500 pages of ix_calls_org_agent_started's wide entries, filtering.
        Index(
            "ix_calls_org_agent_status_started", "org_id", "agent_id", "status", "started_at", "id"
        ),
        *(
            Index(
                f"ix_calls_{column}_trgm",
                column,
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
            )
            for column in TRIGRAM_COLUMNS
        ),
        Index("ix_calls_assembly_due", "assembly_state", "assembly_next_at"),
        Index("ix_calls_org_assembled", "org_id", "assembled_at"),  # alert windows
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(40))
    provider_call_id: Mapped[str] = mapped_column(String(200), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(200))
    campaign_id: Mapped[str | None] = mapped_column(String(200))
    direction: Mapped[str | None] = mapped_column(String(20))
    channel: Mapped[str | None] = mapped_column(String(20))
    from_number: Mapped[str | None] = mapped_column(String(64))
    to_number: Mapped[str | None] = mapped_column(String(64))
    customer_number: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(20))
    end_reason: Mapped[str | None] = mapped_column(String(20))
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)
    billed_duration_s: Mapped[float | None] = mapped_column(Float)
    has_recording: Mapped[bool] = mapped_column(Boolean, default=False)
    # Copies of record fields that queries filter and aggregate on (the record stays the truth).
    # model/record_columns.py lists every column copied from the record, these and some above
    # (this layer cannot import the model); tests/model/test_record_columns.py checks the two agree.
    cost_total: Mapped[float | None] = mapped_column(Float)
    cost_currency: Mapped[str | None] = mapped_column(String(8))
    cost_llm: Mapped[float | None] = mapped_column(Float)
    cost_stt: Mapped[float | None] = mapped_column(Float)
    cost_tts: Mapped[float | None] = mapped_column(Float)
    cost_telephony: Mapped[float | None] = mapped_column(Float)
    cost_platform: Mapped[float | None] = mapped_column(Float)
    latency_turn_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_turn_p95_ms: Mapped[float | None] = mapped_column(Float)
    time_to_first_word_ms: Mapped[float | None] = mapped_column(Float)
    fields: Mapped[dict[str, Any]]
    details: Mapped[dict[str, Any] | None]
    record: Mapped[dict[str, Any] | None]
    assembly_state: Mapped[str] = mapped_column(String(20))
    assembly_attempts: Mapped[int] = mapped_column(Integer, default=0)
    assembly_failures: Mapped[int] = mapped_column(Integer, default=0)
    assembly_next_at: Mapped[datetime | None]
    assembly_lease_until: Mapped[datetime | None]
    assembly_last_error: Mapped[str | None] = mapped_column(Text)
    assembled_at: Mapped[datetime | None]
    recording_deadline: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RecordingArchive(Base):
    """A call's recording copied into the org's recording store (migration 0013): the truth of
    the record's `recording.archive`, and the archive task's lease and retries."""

    __tablename__ = "recording_archives"
    __table_args__ = (Index("ix_recording_archives_due", "status", "next_at"),)

    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    org_id: Mapped[str] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(20))  # pending, archived, failed, skipped
    url: Mapped[str] = mapped_column(Text)  # the platform's URLs that were (to be) archived
    dual_url: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # The stored files: the recording, and a separate dual-channel file when the platform has one.
    key: Mapped[str | None] = mapped_column(Text)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(100))
    dual_key: Mapped[str | None] = mapped_column(Text)
    dual_bytes: Mapped[int | None] = mapped_column(BigInteger)
    dual_sha256: Mapped[str | None] = mapped_column(String(64))
    dual_content_type: Mapped[str | None] = mapped_column(String(100))
    archived_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
