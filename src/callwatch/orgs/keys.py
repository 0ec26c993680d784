"""An org's API keys: issued (shown once, stored hashed), listed, revoked, and checked.

Data functions take a Session and never commit.
"""

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from callwatch import ids
from callwatch.crypto import hash_key
from callwatch.errors import Conflict, NotFound
from callwatch.tables import FIRST_KEY, ApiKey, Org, Source

# A key's last use is written when the one stored is older than this: at most one write per key
# per minute, however many requests it makes (and across every web process, as the UPDATE checks
# the stored value again), so reading `last_used_at` is accurate to this much.
LAST_USED_EVERY = timedelta(minutes=1)
PREFIX_LENGTH = 7  # "cw_" and four characters of the random part


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class KeyView(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="the key's first characters, to tell keys apart")
    created_at: datetime
    last_used_at: datetime | None = Field(
        description="accurate to a minute: written at most once a minute per key"
    )


class KeyCreated(KeyView):
    api_key: str = Field(description="shown once; stored hashed")


class KeyList(BaseModel):
    items: list[KeyView]


class OrgSummary(BaseModel):
    id: str
    name: str
    created_at: datetime
    sources: int = Field(description="how many sources the org has")
    keys: int = Field(description="how many API keys the org has")


class OrgList(BaseModel):
    items: list[OrgSummary]


def view(key: ApiKey) -> KeyView:
    return KeyView(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
    )


def issue(
    session: Session, org_id: str, now: datetime, name: str = FIRST_KEY
) -> tuple[ApiKey, str]:
    """A new key for the org; returns it and the key itself (shown once, stored hashed)."""
    secret = ids.new_token("cw_")
    key = ApiKey(
        id=ids.new_id("key"),
        org_id=org_id,
        key_hash=hash_key(secret),
        prefix=secret[:PREFIX_LENGTH],
        name=name,
        created_at=now,
    )
    session.add(key)
    session.flush()
    return key, secret


def list_keys(session: Session, org_id: str) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.org_id == org_id).order_by(ApiKey.id)))


def revoke(session: Session, org_id: str, key_id: str) -> None:
    """Delete one of the org's keys; it answers 401 from the next request on (keys are looked up
    on every request, never cached). The org's last key stays: without it nobody could ask for
    another."""
    # The org's row lock makes two revocations of its last two keys take turns (Postgres; SQLite
    # transactions take turns anyway), so the count below cannot go stale before the delete.
    session.scalar(select(Org.id).where(Org.id == org_id).with_for_update())
    if (
        session.scalar(select(ApiKey.id).where(ApiKey.id == key_id, ApiKey.org_id == org_id))
        is None
    ):
        raise NotFound(f"no API key {key_id!r}")
    count = session.scalar(select(func.count(ApiKey.id)).where(ApiKey.org_id == org_id)) or 0
    if count <= 1:
        raise Conflict(
            "this is the org's last API key: create another (POST /api/keys) before deleting it"
        )
    session.execute(delete(ApiKey).where(ApiKey.id == key_id))


def org_of(session: Session, secret: str) -> str | None:
    """The org whose key this is, or None; nothing is written."""
    return session.scalar(select(ApiKey.org_id).where(ApiKey.key_hash == hash_key(secret)))


def identify(session: Session, secret: str, now: datetime) -> tuple[str, str] | None:
    """(key id, org id) of this key, or None; notes the key's use when the stored one is stale."""
    found = session.execute(
        select(ApiKey.id, ApiKey.org_id, ApiKey.last_used_at).where(
            ApiKey.key_hash == hash_key(secret)
        )
    ).one_or_none()
    if found is None:
        return None
    key_id, org_id, last_used_at = found
    stale = now - LAST_USED_EVERY
    if last_used_at is None or last_used_at <= stale:
        # Checked again in the UPDATE: of concurrent requests at the minute's turn, one writes.
        session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= stale),
            )
            .values(last_used_at=now)
        )
    return str(key_id), str(org_id)


def org_of_key(session: Session, key_id: str) -> str | None:
    """The org of the key with this id, or None once it is revoked; nothing is written."""
    return session.scalar(select(ApiKey.org_id).where(ApiKey.id == key_id))


def list_orgs(session: Session) -> list[OrgSummary]:
    """Every org with how many sources and keys it has, oldest first."""
    sources = (
        select(Source.org_id, func.count().label("n"))
        .where(Source.deleted_at.is_(None))  # a deleted source stays only for its calls
        .group_by(Source.org_id)
        .subquery("sources")
    )
    keys = select(ApiKey.org_id, func.count().label("n")).group_by(ApiKey.org_id).subquery("keys")
    rows = session.execute(
        select(
            Org.id,
            Org.name,
            Org.created_at,
            func.coalesce(sources.c.n, 0),
            func.coalesce(keys.c.n, 0),
        )
        .outerjoin(sources, sources.c.org_id == Org.id)
        .outerjoin(keys, keys.c.org_id == Org.id)
        .order_by(Org.created_at, Org.id)
    )
    return [
        OrgSummary(id=id_, name=name, created_at=created_at, sources=n_sources, keys=n_keys)
        for id_, name, created_at, n_sources, n_keys in rows
    ]
