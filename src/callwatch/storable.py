"""What the database can store of an inbox row: the column limits of tables.py, checked at intake.

A value the database cannot store fails the INSERT of every request in its batch (other orgs'
too), or later the worker's transaction of every event in its queue message; so intake answers
422 naming the field instead, before the 202. The limits are read from the columns, not copied.
A derived key (the dedupe key) is never refused: one too long is stored as its digest, which
dedupes the same as the key itself. (NUL characters, which neither text nor jsonb can hold, are
refused where bodies are parsed: `validation`.)
"""

import hashlib
from typing import Any, NoReturn

from sqlalchemy import ColumnElement, String

from callwatch.errors import InvalidInput
from callwatch.events import CallFields
from callwatch.inbox import InboxRow
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
