"""Orgs, their API keys and their sources; data functions take a Session and never commit."""

import ipaddress
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, HttpUrl, StringConstraints
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from callwatch import ids, providers
from callwatch.crypto import Vault
from callwatch.errors import Conflict, InvalidInput, NotFound
from callwatch.orgs import keys
from callwatch.outbound import ssrf
from callwatch.providers.base import WEBHOOK_SECRET, SourceConfig
from callwatch.ratelimits import RateLimit
from callwatch.tables import Org, Source


class OrgIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


def _address_or_network(value: str) -> str:
    if _network(value) is None:
        raise ValueError("expected an IP address or a CIDR network, e.g. 203.0.113.0/24")
    return value.strip()


AddressOrNetwork = Annotated[
    str, StringConstraints(max_length=64), AfterValidator(_address_or_network)
]


class SourceSettings(BaseModel):
    api_base_url: HttpUrl | None = None
    detail_url: str | None = None
    allowed_ips: list[AddressOrNetwork] = Field(
        default_factory=list,
        max_length=1000,
        description="addresses or CIDR networks (IPv4 or IPv6) webhooks may come from; empty: any",
    )
    rate_limit: RateLimit | None = Field(
        None, description="webhooks past it get 429 with Retry-After; null: no limit"
    )


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4096)  # intake checks every webhook of a source against the same list
def _network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def ip_allowed(allowed: list[str], client_ip: str | None) -> bool:
    """Whether the client's address is in one of the `allowed_ips` (addresses or networks)."""
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for text in allowed:
        network = _network(text)  # an entry saved before it was validated may be None
        if network is not None and address in network:
            return True
    return False


class SourceIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    provider: str
    settings: SourceSettings = Field(default_factory=SourceSettings)
    credentials: dict[str, str] = Field(default_factory=dict)


def create_org(session: Session, data: OrgIn, now: datetime) -> tuple[Org, str]:
    """Create an org and its first API key; the key is returned once and stored hashed."""
    if session.scalar(select(Org.id).where(Org.name == data.name)) is not None:
        raise Conflict(f"an org named {data.name!r} already exists", field="name")
    org = Org(id=ids.new_id("org"), name=data.name, created_at=now)
    session.add(org)
    session.flush()
    return org, keys.issue(session, org.id, now)[1]


def get_org(session: Session, name_or_id: str) -> Org:
    org = session.scalar(select(Org).where((Org.id == name_or_id) | (Org.name == name_or_id)))
    if org is None:
        raise NotFound(f"no org {name_or_id!r}")
    return org


CALL_ID = "{call_id}"


def vet_settings(settings: SourceSettings, guard: ssrf.Guard) -> None:
    """The URLs callwatch will fetch for the source reach public addresses only (the guard
    checks them again at every connect): InvalidInput naming the setting otherwise."""
    if settings.api_base_url is not None:
        url = str(settings.api_base_url)
        ssrf.vet_url(url, guard, field="settings.api_base_url", use="can be fetched")
    if settings.detail_url is not None:
        template = settings.detail_url
        field = "settings.detail_url"
        example = template.replace(CALL_ID, "call_id")
        ssrf.check_url(example, field)
        if CALL_ID in urlsplit(template).netloc:
            # The call id comes from the platform's webhook: it must not pick the host.
            raise InvalidInput(
                f"{field}: {CALL_ID} may stand in the path or query only", field=field
            )
        ssrf.vet_url(example, guard, field=field, use="can be fetched")


def create_source(
    session: Session,
    vault: Vault,
    org_id: str,
    data: SourceIn,
    now: datetime,
    *,
    guard: ssrf.Guard,
) -> tuple[Source, str | None]:
    """Create a source; returns it and the signing secret generated for it, if any (shown once).

    Its URLs are vetted first: called before other statements, the DNS lookups hold no lock."""
    vet_settings(data.settings, guard)
    try:
        adapter = providers.get(data.provider)
    except KeyError:
        raise InvalidInput(
            f"unknown provider {data.provider!r}; known: {', '.join(providers.names())}",
            field="provider",
        ) from None
    credentials = providers.canonical_credentials(data.provider, data.credentials)
    generated = adapter.prepare_credentials(credentials)
    source = Source(
        id=ids.new_id("src"),
        org_id=org_id,
        name=data.name,
        provider=data.provider,
        webhook_token=ids.new_token(nbytes=24),
        settings=data.settings.model_dump(mode="json"),
        credentials=vault.seal(credentials),
        created_at=now,
        enabled=True,
    )
    session.add(source)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"a source named {data.name!r} already exists", field="name") from None
    return source, generated


def list_sources(session: Session, org_id: str) -> list[Source]:
    """The org's sources, the deleted ones left out."""
    return list(
        session.scalars(
            select(Source)
            .where(Source.org_id == org_id, Source.deleted_at.is_(None))
            .order_by(Source.id)
        )
    )


def source_by_token(
    session: Session, vault: Vault, token: str, now: datetime | None = None
) -> SourceConfig | None:
    """The source whose webhook token this is, or was until a rotation's overlap ends."""
    # One read for both (each column has its unique index): a miss is one round trip.
    found = session.scalars(
        select(Source).where(or_(Source.webhook_token == token, Source.previous_token == token))
    ).all()
    current = next((source for source in found if source.webhook_token == token), None)
    if current is not None:
        return config_of(current, vault)
    source = found[0] if found else None
    until = None if source is None else source.previous_token_until
    if source is None or until is None or until <= (now or datetime.now(UTC)):
        return None
    return config_of(source, vault, token_until=until.timestamp())


def source_by_id(session: Session, vault: Vault, source_id: str) -> SourceConfig:
    source = session.get(Source, source_id)
    if source is None:
        raise NotFound(f"no source {source_id!r}")
    return config_of(source, vault)


def config_of(source: Source, vault: Vault, *, token_until: float | None = None) -> SourceConfig:
    previous = None
    if source.previous_secret is not None:
        previous = str(vault.open(source.previous_secret)[WEBHOOK_SECRET])
    until = source.previous_secret_until
    # Sources stored before `webhook_secret` was the one name keep their old one.
    credentials = providers.canonical_credentials(source.provider, vault.open(source.credentials))
    return SourceConfig(
        id=source.id,
        org_id=source.org_id,
        name=source.name,
        provider=source.provider,
        settings=source.settings,
        credentials=credentials,
        enabled=source.enabled is not False,
        deleted=source.deleted_at is not None,
        token_until=token_until,
        previous_secret=previous,
        previous_secret_until=0.0 if until is None else until.timestamp(),
    )


def webhook_url(public_url: str, source: Source) -> str:
    return f"{public_url.rstrip('/')}/webhooks/{source.webhook_token}"
