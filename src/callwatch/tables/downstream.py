"""Subscriptions, their deliveries and attempts; alert rules and their alerts."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
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

from callwatch.tables.base import Base, JSONType


class Subscription(Base):
    """A subscriber's endpoint: which events it wants, and the secrets we sign them with."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(JSONType)
    filters: Mapped[dict[str, Any]]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(Text)  # encrypted, like source credentials
    # After a rotation the previous secret still signs, alongside the new one, until then.
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None]
    failing_since: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # {"per_second": float, "burst": int} (ratelimits.RateLimit); NULL: no limit.
    rate_limit: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Delivery(Base):
    """One event for one subscription: the source of truth of whether it was delivered."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # The same event fanned out twice is one delivery.
        UniqueConstraint("subscription_id", "event_key"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
        Index("ix_deliveries_subscription_created", "subscription_id", "created_at"),
        # A batch claims one subscription's due deliveries.
        Index("ix_deliveries_subscription_due", "subscription_id", "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the `webhook-id`
    org_id: Mapped[str] = mapped_column(String(40))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(40))
    event_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20))  # pending, delivered, failed, canceled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class DeliveryAttempt(Base):
    """One try at a delivery, kept for the delivery log."""

    __tablename__ = "delivery_attempts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    duration_ms: Mapped[float | None] = mapped_column(Float)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(20))  # delivered, retry, failed, disabled


class AlertRule(Base):
    """A condition on each assembled call (`expression`) or on a window of calls (`window`)."""

    __tablename__ = "alert_rules"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10))  # call, window
    expression: Mapped[str | None] = mapped_column(Text)
    window: Mapped[dict[str, Any] | None]
    agent_id: Mapped[str | None] = mapped_column(String(200))
    source_id: Mapped[str | None] = mapped_column(String(40))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


_CALL_ALERT = text("call_id IS NOT NULL")


class Alert(Base):
    """A rule firing: on one call, or on a window (open until the condition clears)."""

    __tablename__ = "alerts"
    __table_args__ = (
        # One alert per rule and call; one open alert per window rule (its key is freed when
        # it resolves).
        UniqueConstraint("rule_id", "dedupe_key"),
        Index("ix_alerts_org_triggered", "org_id", "triggered_at"),
        # A deleted call's alerts (migration 0015).
        Index(
            "ix_alerts_call_id", "call_id", postgresql_where=_CALL_ALERT, sqlite_where=_CALL_ALERT
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40))
    rule_id: Mapped[str] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    call_id: Mapped[str | None] = mapped_column(String(40))
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(10))  # open, resolved (per-call alerts: open)
    triggered_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
