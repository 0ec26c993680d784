"""Subscriptions: create, change, rotate, disable; data functions take a Session, never commit."""

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from callwatch import ids, signatures
from callwatch.crypto import Vault
from callwatch.errors import InvalidInput, NotFound
from callwatch.model.events import CallStatus
from callwatch.ratelimits import RateLimit
from callwatch.tables import Delivery, Source, Subscription

log = logging.getLogger("callwatch.subscriptions")

EventType = Literal[
    "call.status_changed",
    "call.assembled",
    "call.assembly_failed",
    "call.deleted",
    "alert.triggered",
    "alert.resolved",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
Text = Annotated[str, Field(min_length=1, max_length=200)]
# Filter name → the key of the event's `data` it is matched against.
FILTER_KEYS = {"agent_id": "agent_id", "source": "source_id", "status": "status"}
RATE_LIMIT = (
    "deliveries per second, with a burst; those past it wait for the limit (not a failed "
    "attempt); null: no limit"
)


class Filters(BaseModel):
    """Each one given must match the event's data; an event without that field does not match."""

    model_config = ConfigDict(extra="forbid")

    agent_id: list[Text] = Field(default_factory=list, max_length=100, description="agent ids")
    source: list[Text] = Field(
        default_factory=list, max_length=100, description="source names or ids (stored as ids)"
    )
    status: list[CallStatus] = Field(default_factory=list, description="call statuses")


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="http(s) endpoint on a public address")
    event_types: list[EventType] = Field(min_length=1, max_length=len(EVENT_TYPES))
    filters: Filters = Field(default_factory=Filters)
    enabled: bool = True
    description: str | None = Field(None, max_length=200)
    rate_limit: RateLimit | None = Field(None, description=RATE_LIMIT)

    @field_validator("event_types")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class SubscriptionPatch(BaseModel):
    """Only the fields given change; `enabled: true` re-enables a disabled subscription."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2048)
    event_types: list[EventType] | None = Field(None, min_length=1, max_length=len(EVENT_TYPES))
    filters: Filters | None = None
    enabled: bool | None = None
    description: str | None = Field(None, max_length=200)
    rate_limit: RateLimit | None = Field(None, description=RATE_LIMIT + " (null lifts it)")

    @model_validator(mode="after")
    def _no_nulls(self) -> "SubscriptionPatch":
        for name in ("url", "event_types", "filters", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise InvalidInput(f"{name}: may not be null", field=name)
        return self


class SubscriptionView(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str]
    filters: dict[str, list[str]]
    enabled: bool
    disabled_reason: str | None = Field(description="why callwatch disabled it, if it did")
    failing_since: datetime | None = Field(description="first failure since the last success")
    rate_limit: RateLimit | None = Field(description=RATE_LIMIT)
    previous_secret_expires_at: datetime | None = Field(
        description="after a rotation, the old secret signs too until then"
    )
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionView):
    secret: str = Field(description="whsec_… signing secret; shown once")


class SubscriptionList(BaseModel):
    items: list[SubscriptionView]


class SecretRotated(BaseModel):
    id: str
    secret: str = Field(description="the new whsec_… secret; shown once")
    previous_secret_expires_at: datetime | None = Field(
        description="the old secret keeps signing alongside the new one until then"
    )


def matches(filters: dict[str, list[str]], data: dict[str, Any]) -> bool:
    """Whether an event's data passes a subscription's filters."""
    return all(
        data.get(key) in filters[name] for name, key in FILTER_KEYS.items() if filters.get(name)
    )


def create(
    session: Session, vault: Vault, org_id: str, data: SubscriptionIn, now: datetime
) -> tuple[Subscription, str]:
    """A new subscription and its signing secret (returned once, stored encrypted)."""
    secret = signatures.new_secret()
    subscription = Subscription(
        id=ids.new_id("sub"),
        org_id=org_id,
        url=data.url,
        description=data.description,
        event_types=list(data.event_types),
        filters=_stored_filters(session, org_id, data.filters),
        enabled=data.enabled,
        rate_limit=_stored_limit(data.rate_limit),
        secret=vault.seal({"secret": secret}),
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    session.flush()
    return subscription, secret


def _stored_limit(limit: RateLimit | None) -> dict[str, Any] | None:
    return None if limit is None else limit.model_dump()


def rate_limit_of(subscription: Subscription) -> RateLimit | None:
    stored = subscription.rate_limit
    return None if stored is None else RateLimit.model_validate(stored)


def _stored_filters(session: Session, org_id: str, filters: Filters) -> dict[str, list[str]]:
    stored: dict[str, list[str]] = {
        "agent_id": list(dict.fromkeys(filters.agent_id)),
        "source": _source_ids(session, org_id, filters.source),
        "status": list(dict.fromkeys(status.value for status in filters.status)),
    }
    return {name: values for name, values in stored.items() if values}


def _source_ids(session: Session, org_id: str, given: list[str]) -> list[str]:
    if not given:
        return []
    rows = session.execute(
        select(Source.id, Source.name).where(
            Source.org_id == org_id, or_(Source.id.in_(given), Source.name.in_(given))
        )
    ).all()
    by_key = {name: source_id for source_id, name in rows} | {sid: sid for sid, _ in rows}
    for index, value in enumerate(given):
        if value not in by_key:
            raise InvalidInput(
                f"filters.source.{index}: no source named {value!r}",
                field=f"filters.source.{index}",
            )
    return list(dict.fromkeys(by_key[value] for value in given))


def get(session: Session, org_id: str, subscription_id: str) -> Subscription:
    """A subscription of this org; another org's is NotFound."""
    subscription = session.get(Subscription, subscription_id)
    if subscription is None or subscription.org_id != org_id:
        raise NotFound(f"no subscription {subscription_id!r}")
    return subscription


def list_for(session: Session, org_id: str) -> list[Subscription]:
    return list(
        session.scalars(
            select(Subscription).where(Subscription.org_id == org_id).order_by(Subscription.id)
        )
    )


def update_subscription(
    session: Session, org_id: str, subscription_id: str, patch: SubscriptionPatch, now: datetime
) -> Subscription:
    subscription = get(session, org_id, subscription_id)
    given = patch.model_fields_set
    if patch.url is not None:
        subscription.url = patch.url
    if patch.event_types is not None:
        subscription.event_types = list(dict.fromkeys(patch.event_types))
    if patch.filters is not None:
        subscription.filters = _stored_filters(session, org_id, patch.filters)
    if "description" in given:
        subscription.description = patch.description
    if "rate_limit" in given:
        subscription.rate_limit = _stored_limit(patch.rate_limit)
    if patch.enabled is True and not subscription.enabled:
        subscription.enabled = True
        subscription.disabled_reason = None
        subscription.failing_since = None
    elif patch.enabled is False and subscription.enabled:
        disable(session, subscription, "disabled through the API", now)
    subscription.updated_at = now
    return subscription


def delete(session: Session, org_id: str, subscription_id: str) -> None:
    """The subscription and, with it, its deliveries and their attempts."""
    session.delete(get(session, org_id, subscription_id))


def rotate_secret(
    session: Session,
    vault: Vault,
    org_id: str,
    subscription_id: str,
    now: datetime,
    overlap_s: float,
) -> tuple[Subscription, str]:
    """A new secret; the current one keeps signing alongside it for `overlap_s`."""
    subscription = get(session, org_id, subscription_id)
    secret = signatures.new_secret()
    if overlap_s > 0:
        subscription.previous_secret = subscription.secret
        subscription.previous_secret_until = now + timedelta(seconds=overlap_s)
    else:
        subscription.previous_secret = subscription.previous_secret_until = None
    subscription.secret = vault.seal({"secret": secret})
    subscription.updated_at = now
    return subscription, secret


def signing_secrets(subscription: Subscription, vault: Vault, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one during
    the rotation overlap."""
    secrets = [str(vault.open(subscription.secret)["secret"])]
    until = subscription.previous_secret_until
    if subscription.previous_secret is not None and until is not None and until > now:
        secrets.append(str(vault.open(subscription.previous_secret)["secret"]))
    return secrets


def disable(session: Session, subscription: Subscription, reason: str, now: datetime) -> None:
    """Disabled, with the reason kept; its pending deliveries are canceled."""
    subscription.enabled = False
    subscription.disabled_reason = reason
    subscription.updated_at = now
    session.execute(
        update(Delivery)
        .where(Delivery.subscription_id == subscription.id, Delivery.state == "pending")
        .values(
            state="canceled",
            last_error=f"subscription disabled: {reason}",
            next_attempt_at=None,
            lease_until=None,
            updated_at=now,
        )
    )
    log.warning(
        "subscription.disabled",
        extra={"subscription_id": subscription.id, "org_id": subscription.org_id, "reason": reason},
    )


def succeeded(session: Session, subscription_id: str) -> None:
    """A delivery got through: the subscription is no longer failing."""
    session.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id, Subscription.failing_since.is_not(None))
        .values(failing_since=None)
    )


def failed(session: Session, subscription_id: str, now: datetime, disable_after_s: float) -> None:
    """Mark the subscription failing; disable it once it has failed without a success for
    `disable_after_s`."""
    session.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id, Subscription.failing_since.is_(None))
        .values(failing_since=now)
    )
    subscription = session.get_one(Subscription, subscription_id, populate_existing=True)
    since = subscription.failing_since
    limit = timedelta(seconds=disable_after_s)
    if subscription.enabled and since is not None and now - since >= limit:
        reason = f"no successful delivery since {since:%Y-%m-%d %H:%M:%SZ}"
        disable(session, subscription, reason, now)


def view(subscription: Subscription, now: datetime) -> SubscriptionView:
    until = subscription.previous_secret_until
    return SubscriptionView(
        id=subscription.id,
        url=subscription.url,
        description=subscription.description,
        event_types=subscription.event_types,
        filters=subscription.filters,
        enabled=subscription.enabled,
        disabled_reason=subscription.disabled_reason,
        failing_since=subscription.failing_since,
        rate_limit=rate_limit_of(subscription),
        previous_secret_expires_at=until if until is not None and until > now else None,
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
    )
