"""An org's data settings (issue 25): how long its data is kept, whether its recordings are
archived, whether free text is redacted. Stored per org; an org that never set them has the
defaults below. Only `archive_recordings` acts so far (recordings/archive.py); retention and
redaction read the others when they are built."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from sqlalchemy.orm import Session

from callwatch.db import insert_ignore, memo
from callwatch.errors import InvalidInput
from callwatch.tables import OrgSettings

MAX_DAYS = 36_500  # a hundred years: beyond it, say null (keep)
Days = StrictInt


class DataSettings(BaseModel):
    """`GET /api/settings`: every setting, set or default."""

    model_config = ConfigDict(extra="forbid")

    retention_days: Days | None = Field(
        None,
        ge=1,
        le=MAX_DAYS,
        description="days calls, their events and archived recordings are kept; null: kept",
    )
    raw_event_retention_days: Days | None = Field(
        30,
        ge=1,
        le=MAX_DAYS,
        description="days raw webhook bodies (which hold the raw PII) are kept; null: kept",
    )
    archive_recordings: StrictBool = Field(
        True, description="copy each recording into callwatch's store; false: archive `skipped`"
    )
    redact_pii: StrictBool = Field(
        False, description="replace phone numbers, emails, card numbers … in free text"
    )


class DataSettingsPatch(BaseModel):
    """`PATCH /api/settings`: the settings to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    retention_days: Days | None = Field(None, ge=1, le=MAX_DAYS)
    raw_event_retention_days: Days | None = Field(None, ge=1, le=MAX_DAYS)
    archive_recordings: StrictBool | None = None
    redact_pii: StrictBool | None = None


def get(session: Session, org_id: str) -> DataSettings:
    row = session.get(OrgSettings, org_id)
    if row is None:
        return DataSettings()
    return DataSettings(
        retention_days=row.retention_days,
        raw_event_retention_days=row.raw_event_retention_days,
        archive_recordings=row.archive_recordings,
        redact_pii=row.redact_pii,
    )


def of_org(session: Session, org_id: str) -> DataSettings:
    """`get`, read once per transaction (the worker asks for each call it stores)."""
    return memo(session, ("data_settings", org_id), lambda: get(session, org_id))


def patch(session: Session, org_id: str, change: DataSettingsPatch, now: datetime) -> DataSettings:
    """Apply the fields given (null keeps data for ever where a retention is null-able)."""
    for name in ("archive_recordings", "redact_pii"):
        if name in change.model_fields_set and getattr(change, name) is None:
            raise InvalidInput(f"{name}: true or false, not null", field=name)
    row = locked_row(session, org_id, now)
    updated = get(session, org_id).model_copy(
        update={name: getattr(change, name) for name in change.model_fields_set}
    )
    row.retention_days = updated.retention_days
    row.raw_event_retention_days = updated.raw_event_retention_days
    row.archive_recordings = updated.archive_recordings
    row.redact_pii = updated.redact_pii
    row.updated_at = now
    return updated


def locked_row(session: Session, org_id: str, now: datetime) -> OrgSettings:
    """The org's settings row, made with the defaults if it has none, locked. Two first writers
    at once both insert it or find it, neither fails; it is locked before it is read, so neither
    loses the other's change."""
    session.execute(
        insert_ignore(session, OrgSettings.__table__),  # type: ignore[arg-type]
        [{"org_id": org_id, "updated_at": now, **DataSettings().model_dump()}],
    )
    row = session.get(OrgSettings, org_id, with_for_update=True, populate_existing=True)
    assert row is not None  # inserted or found just above
    return row
