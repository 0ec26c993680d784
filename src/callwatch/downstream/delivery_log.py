"""A subscription's delivery log and re-sends; data functions take a Session, never commit."""

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import ColumnElement, and_, func, not_, select, update
from sqlalchemy.orm import Session

from callwatch.downstream import subscriptions
from callwatch.errors import Conflict, InvalidInput, NotFound
from callwatch.tables import Delivery, DeliveryAttempt

DeliveryState = Literal["pending", "delivered", "failed", "canceled"]
RESEND_LIMIT = 10_000


class AttemptView(BaseModel):
    number: int
    started_at: datetime
    duration_ms: float | None
    status_code: int | None
    error: str | None
    outcome: str = Field(description="sending, delivered, retry, failed, disabled, interrupted")


class DeliveryView(BaseModel):
    id: str = Field(description="the webhook-id header; the same on every attempt")
    event_type: str
    event_key: str
    state: DeliveryState
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempts: list[AttemptView] = Field(description="oldest first")
    payload: dict[str, Any] | None = Field(None, description="with include=payload")


class DeliveryQuery(BaseModel):
    skip: int = Field(0, ge=0, le=10**9)
    limit: int = Field(100, ge=1, le=1000)
    state: list[DeliveryState] = Field(default_factory=list)
    include: list[Literal["payload"]] = Field(default_factory=list)


class DeliveryPage(BaseModel):
    items: list[DeliveryView] = Field(description="newest first")
    total: int
    skip: int
    limit: int


class ResendRange(BaseModel):
    """Deliveries created in [from, to); a time without a zone is UTC."""

    model_config = ConfigDict(extra="forbid")

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")

    @field_validator("start", "end")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        try:
            return _utc(value)
        except OverflowError:
            raise ValueError("out of range once converted to UTC") from None

    @model_validator(mode="after")
    def _ordered(self) -> "ResendRange":
        if self.start >= self.end:
            raise InvalidInput("from must be before to", field="from")
        return self


class Resent(BaseModel):
    queued: int = Field(description="deliveries set to be sent again")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def deliveries_page(
    session: Session, org_id: str, subscription_id: str, query: DeliveryQuery
) -> DeliveryPage:
    """A page of the subscription's deliveries, newest first, each with its attempts."""
    subscriptions.get(session, org_id, subscription_id)
    where = [Delivery.subscription_id == subscription_id]
    if query.state:
        where.append(Delivery.state.in_(query.state))
    total = session.scalar(select(func.count()).select_from(Delivery).where(*where)) or 0
    rows = list(
        session.scalars(
            select(Delivery)
            .where(*where)
            .order_by(Delivery.created_at.desc(), Delivery.id.desc())
            .offset(query.skip)
            .limit(query.limit)
        )
    )
    attempts: dict[str, list[AttemptView]] = {row.id: [] for row in rows}
    if rows:
        for attempt in session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(list(attempts)))
            .order_by(DeliveryAttempt.number)
        ):
            attempts[attempt.delivery_id].append(
                AttemptView.model_validate(attempt, from_attributes=True)
            )
    items = [
        DeliveryView(
            id=row.id,
            event_type=row.event_type,
            event_key=row.event_key,
            state=row.state,
            next_attempt_at=row.next_attempt_at,
            last_status=row.last_status,
            last_error=row.last_error,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            attempts=attempts[row.id],
            payload=row.payload if "payload" in query.include else None,
        )
        for row in rows
    ]
    return DeliveryPage(items=items, total=total, skip=query.skip, limit=query.limit)


def _in_flight(now: datetime) -> ColumnElement[bool]:
    """An attempt holds the delivery: its claim set next_attempt_at to its lease's end."""
    return and_(
        Delivery.state == "pending",
        Delivery.lease_until.is_not(None),  # the guards keep NOT(...) free of NULLs
        Delivery.next_attempt_at.is_not(None),
        Delivery.lease_until > now,
        Delivery.next_attempt_at >= Delivery.lease_until,
    )


def _sendable(session: Session, org_id: str, subscription_id: str) -> None:
    subscription = subscriptions.get(session, org_id, subscription_id)
    if not subscription.enabled:
        raise Conflict(
            "the subscription is disabled; re-enable it (PATCH enabled: true) first",
            field="enabled",
        )


def _reset(session: Session, delivery_ids: list[str], now: datetime) -> None:
    """Pending again, due now, with a fresh round of attempts (the log keeps the old ones)."""
    for start in range(0, len(delivery_ids), 500):
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids[start : start + 500]))
            .values(
                state="pending",
                attempts=0,
                next_attempt_at=now,
                lease_until=None,
                delivered_at=None,
                updated_at=now,
            )
        )


def resend_one(
    session: Session, org_id: str, subscription_id: str, delivery_id: str, now: datetime
) -> bool:
    """Set one delivery to be sent again (same webhook-id); False if an attempt is under way."""
    _sendable(session, org_id, subscription_id)
    found = session.scalar(
        select(Delivery.id).where(
            Delivery.id == delivery_id, Delivery.subscription_id == subscription_id
        )
    )
    if found is None:
        raise NotFound(f"no delivery {delivery_id!r}")
    busy = session.scalar(select(Delivery.id).where(Delivery.id == delivery_id, _in_flight(now)))
    if busy is not None:
        return False
    _reset(session, [delivery_id], now)
    return True


def resend_range(
    session: Session, org_id: str, subscription_id: str, window: ResendRange, now: datetime
) -> list[str]:
    """Set every delivery created in [from, to) to be sent again; their ids."""
    _sendable(session, org_id, subscription_id)
    where = [
        Delivery.subscription_id == subscription_id,
        Delivery.created_at >= window.start,
        Delivery.created_at < window.end,
        not_(_in_flight(now)),
    ]
    count = session.scalar(select(func.count()).select_from(Delivery).where(*where)) or 0
    if count > RESEND_LIMIT:
        raise InvalidInput(
            f"the range holds {count} deliveries; at most {RESEND_LIMIT} at a time: narrow it",
            field="from",
        )
    chosen = list(session.scalars(select(Delivery.id).where(*where).order_by(Delivery.created_at)))
    _reset(session, chosen, now)
    return chosen
