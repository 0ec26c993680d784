"""What the inbox cannot hold: which errors a batch's data caused, and the 422 naming it.

Intake's checks reject what they know of before a batch is formed; this is the backstop for
what gets past them, so that one request's data never fails the other requests of its batch.
"""

import psycopg
from sqlalchemy import exc as sa_exc

from callwatch.errors import InvalidInput
from callwatch.inbox import InboxRow
from callwatch.tables import InboxEvent

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


_COLUMNS = InboxEvent.__table__.columns


def rejection(rows: list[InboxRow], exc: Exception) -> InvalidInput:
    """422 for a request the inbox cannot hold, naming what is wrong where that can be told."""
    for row in rows:
        for name in ("dedupe_key", "provider_call_id", "content_type", "raw_body"):
            value: str = getattr(row, name)
            limit = getattr(_COLUMNS[name].type, "length", None)
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
