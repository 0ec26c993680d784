"""A source after its creation: read, change, rotate its token or secret, delete.

Data functions take a Session and never commit. Another org's source, and a deleted one, are
NotFound. A deleted source stays in the table (`deleted_at`), so its calls keep their source.
"""

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from callwatch import ids, providers
from callwatch.crypto import Vault
from callwatch.errors import Conflict, InvalidInput, NotFound
from callwatch.orgs.tenancy import SourceSettings, vet_settings
from callwatch.outbound import ssrf
from callwatch.providers.base import WEBHOOK_SECRET
from callwatch.tables import Source
from callwatch.validation import invalid

DEFAULT_OVERLAP_S = 24 * 3600.0
MAX_OVERLAP_S = 30 * 24 * 3600.0


class SourcePatch(BaseModel):
    """Only the fields given change. `settings` and `credentials` are merged into the stored
    ones (a credential set to null is removed); the result is validated as at creation."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    settings: dict[str, Any] | None = Field(
        None,
        description="api_base_url, detail_url, allowed_ips, rate_limit; a key set to null is "
        "cleared",
    )
    credentials: dict[str, str | None] | None = Field(
        None, description="merged into the stored credentials; never returned"
    )
    allowed_ips: list[str] | None = Field(
        None, max_length=1000, description="shorthand for settings.allowed_ips"
    )
    enabled: bool | None = Field(None, description="false: its webhooks answer 410")

    @model_validator(mode="after")
    def _no_nulls(self) -> "SourcePatch":
        for name in ("name", "settings", "credentials", "allowed_ips", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise InvalidInput(f"{name}: may not be null", field=name)
        return self


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_s: float = Field(
        DEFAULT_OVERLAP_S,
        ge=0,
        le=MAX_OVERLAP_S,
        description="how long the previous one keeps working; 0: it stops at once",
    )


def get(session: Session, org_id: str, source_id: str) -> Source:
    source = session.get(Source, source_id)
    if source is None or source.org_id != org_id or source.deleted_at is not None:
        raise NotFound(f"no source {source_id!r}")
    return source


def merged_settings(source: Source, changes: SourcePatch) -> SourceSettings | None:
    """The settings after the patch, validated as at creation; None if the patch leaves them."""
    if changes.settings is None and changes.allowed_ips is None:
        return None
    merged = dict(source.settings) | (changes.settings or {})
    if changes.allowed_ips is not None:
        merged["allowed_ips"] = changes.allowed_ips
    try:
        return SourceSettings.model_validate(merged)
    except ValidationError as exc:
        raise invalid(exc, "settings.") from None


def update(
    session: Session,
    vault: Vault,
    source: Source,
    changes: SourcePatch,
    settings: SourceSettings | None,
    now: datetime,
) -> str | None:
    """Apply a patch whose settings were vetted (`merged_settings`, `vet`); returns a secret
    callwatch generated because the patch removed it (shown once), if any."""
    generated = None
    if changes.credentials is not None:
        given = {k: v for k, v in changes.credentials.items() if v is not None}
        removed = {k for k, v in changes.credentials.items() if v is None}
        stored = providers.canonical_credentials(source.provider, vault.open(source.credentials))
        given = providers.canonical_credentials(source.provider, given)
        removed = set(providers.canonical_credentials(source.provider, dict.fromkeys(removed, "")))
        credentials = {k: v for k, v in (stored | given).items() if k not in removed}
        generated = providers.get(source.provider).prepare_credentials(credentials)
        source.credentials = vault.seal(credentials)
    if settings is not None:
        source.settings = settings.model_dump(mode="json")
    if changes.name is not None:
        source.name = changes.name
    if changes.enabled is not None:
        source.enabled = changes.enabled
    source.updated_at = now
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"a source named {changes.name!r} already exists", field="name") from None
    return generated


def vet(settings: SourceSettings | None, guard: ssrf.Guard) -> None:
    """Before the transaction: the URLs' DNS lookups must not hold the database."""
    if settings is not None:
        vet_settings(settings, guard)


def delete(session: Session, source: Source, now: datetime) -> None:
    """Soft delete: its tokens stop at once; its calls stay, their source now named
    `<name> (deleted <id>)`, which frees the name for a new source (the id keeps it unique)."""
    suffix = f" (deleted {source.id})"
    source.name = source.name[: 200 - len(suffix)] + suffix
    source.deleted_at = now
    source.updated_at = now
    source.previous_token = source.previous_token_until = None
    source.previous_secret = source.previous_secret_until = None


def rotate_token(session: Session, source: Source, overlap_s: float, now: datetime) -> None:
    """A new webhook token; the current one keeps working for `overlap_s` (a token rotated out
    earlier stops now)."""
    if overlap_s > 0:
        source.previous_token = source.webhook_token
        source.previous_token_until = now + timedelta(seconds=overlap_s)
    else:
        source.previous_token = source.previous_token_until = None
    source.webhook_token = ids.new_token(nbytes=24)
    source.updated_at = now
    session.flush()


def rotate_secret(source: Source, vault: Vault, overlap_s: float, now: datetime) -> str:
    """A new webhook secret, for a platform whose secret callwatch generates (Conflict
    otherwise); the current one keeps verifying for `overlap_s`. Returns it, to show once."""
    credentials = providers.canonical_credentials(source.provider, vault.open(source.credentials))
    current = credentials.pop(WEBHOOK_SECRET, None)
    try:
        secret = providers.get(source.provider).prepare_credentials(credentials)
    except InvalidInput:
        secret = None
    if secret is None or current is None:
        raise Conflict(
            f"{source.provider} issues this source's secret itself: rotate it on the platform, "
            "then PATCH the source's credentials.webhook_secret",
            field="provider",
        )
    if overlap_s > 0:
        source.previous_secret = vault.seal({WEBHOOK_SECRET: current})
        source.previous_secret_until = now + timedelta(seconds=overlap_s)
    else:
        source.previous_secret = source.previous_secret_until = None
    source.credentials = vault.seal(credentials)
    source.updated_at = now
    return secret
