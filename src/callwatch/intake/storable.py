"""What the database can store of an inbox row: checked at intake, and the backstop after it.

A value the database cannot store fails the INSERT of every request in its batch (other orgs'
too), or later the worker's transaction of every event in its queue message; so intake answers
422 naming the field instead, before the 202 (`check`). The limits are read from the columns of
tables/, not copied. A derived key (the dedupe key) is never refused: one too long is stored as
its digest, which dedupes the same as the key itself. (NUL characters, which neither text nor
jsonb can hold, are refused where bodies are parsed: `validation`.)

What gets past the checks is caught by the backstop: a batch whose INSERT fails for its data
(`is_data_error`) is split until the request that carries it is alone, and that request gets the
422 of `rejection`; the other requests of its batch are stored.
"""

import hashlib
from typing import Any, NoReturn

import psycopg
from sqlalchemy import ColumnElement, String
from sqlalchemy import exc as sa_exc

from callwatch.errors import InvalidInput
from callwatch.intake.inbox import InboxRow
from callwatch.model.events import CallFields
from callwatch.tables import Call, InboxEvent, PendingJoin


def _length(column: ColumnElement[Any]) -> int:
    kind = column.type
    if not isinstance(kind, String) or kind.length is None:
        raise TypeError(f"{column} has no length")
    return kind.length


_INBOX = InboxEvent.__table__.c
_CALLS = Call.__table__.c
# Where an event's values go: the inbox row, the call's row (`calls._apply_state`), the joins.
PROVIDER_CALL_ID = min(_length(_INBOX.provider_call_id), _length(_CALLS.provider_call_id))
DEDUPE_KEY = _length(_INBOX.dedupe_key)
CONTENT_TYPE = _length(_INBOX.content_type)
JOIN_KEY = _length(PendingJoin.__table__.c.join_key)
FIELDS = {
    name: _length(_CALLS[name])
    for name in CallFields.model_fields
    if name in _CALLS and isinstance(_CALLS[name].type, String)
}
_FIELD_LIMITS = tuple(FIELDS.items())
DIGEST_PREFIX = "sha256:"


def fit(key: str, length: int) -> str:
    """A derived key as it is stored: itself if it fits in `length`, else its digest."""
    if len(key) <= length:
        return key
    return DIGEST_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def check(row: InboxRow) -> None:
    """Raise InvalidInput (422, naming the field) if the row holds what cannot be stored."""
    event = row.event
    # Inline, and the fields' own dict: this runs for every event intake takes (~0.6 µs; a
    # call and a getattr per field took 3.4 µs).
    values = event.fields.__dict__
    for name, length in _FIELD_LIMITS:
        value = values[name]
        if value is not None and len(value) > length:
            _refuse(name, value, length)
    if len(row.provider_call_id) > PROVIDER_CALL_ID:
        _refuse("provider_call_id", row.provider_call_id, PROVIDER_CALL_ID)
    if len(row.content_type) > CONTENT_TYPE:
        _refuse("content-type", row.content_type, CONTENT_TYPE)
    if event.enrich:
        for name, value in event.enrich.items():
            if name in FIELDS and isinstance(value, str) and len(value) > FIELDS[name]:
                _refuse(name, value, FIELDS[name])
    for key in event.joins:
        if len(key) > JOIN_KEY:
            _refuse("joins", key, JOIN_KEY)


def _refuse(field: str, value: str, length: int) -> NoReturn:
    raise InvalidInput(
        f"{field}: {len(value)} characters, at most {length} can be stored", field=field
    )


# What a statement raises for the data it was given, not for the database's state: the batch is
# split so that only the request that carries it fails (a DBAPI error of another kind, or a
# connection that is gone, fails its batch with StoreUnavailable).
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError, sa_exc.DataError, sa_exc.IntegrityError)


def is_data_error(exc: BaseException) -> bool:
    if isinstance(exc, _DATA_ERRORS):
        return True
    # A value the driver could not even bind (SQLite: a lone surrogate in a str).
    if isinstance(exc, sa_exc.StatementError):
        return isinstance(exc.orig, UnicodeError)
    return isinstance(exc, UnicodeError)


def rejection(rows: list[InboxRow], exc: Exception) -> InvalidInput:
    """422 for a request the inbox cannot hold, naming what is wrong where that can be told."""
    for row in rows:
        for name in ("dedupe_key", "provider_call_id", "content_type", "raw_body"):
            value: str = getattr(row, name)
            limit = getattr(_INBOX[name].type, "length", None)
            if limit is not None and len(value) > limit:
                detail = f"{name} is {len(value)} characters long; at most {limit} can be stored"
                return InvalidInput(detail, field=name)
            if (problem := _text_problem(value)) is not None:
                return InvalidInput(f"{name} {problem}", field=name)
        try:
            event = row.event.model_dump_json()
        except ValueError:
            return InvalidInput(f"the event {_NOT_UTF8}", field="event")
        if "\\u0000" in event:
            return InvalidInput(f"the event {_NUL}", field="event")
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
    return InvalidInput(f"the request's events cannot be stored: {reason}")


_NUL = "contains a NUL character, which the database cannot store"
_NOT_UTF8 = "contains text that is not valid Unicode (a lone surrogate)"


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return _NUL
    try:
        value.encode()
    except UnicodeEncodeError:
        return _NOT_UTF8
    return None
