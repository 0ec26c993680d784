"""Reading request bodies (within the size limit) and parsing them and query strings into pydantic
models, with errors naming the field."""

import contextlib
import json
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, RootModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope

from callwatch.errors import InvalidInput, MalformedBody, NotFound, PayloadTooLarge

M = TypeVar("M", bound=BaseModel)


def invalid(exc: ValidationError, prefix: str = "", *, depth: int | None = None) -> InvalidInput:
    """The first error, naming its field (`depth` keeps only that many parts of its path)."""
    first = exc.errors()[0]
    field = prefix + ".".join(str(part) for part in first["loc"][:depth])
    return InvalidInput(f"{field}: {first['msg']}" if field else first["msg"], field=field or None)


async def read_body(request: Request) -> bytes:
    """A Starlette request's body, within the one `max_body_bytes` limit (else PayloadTooLarge)."""
    limit: int = request.app.state.services.runtime.settings.max_body_bytes
    return await read_limited(request.scope, request.receive, limit)


async def read_limited(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Every body the service reads comes through here: refused as soon as it is over `limit`.

    On ASGI's `receive` itself, not an async iterator over it: a webhook's CPU is counted in
    microseconds (bench/README.md).
    """
    for name, value in scope["headers"]:
        # ASCII digits only: a latin-1 "²" passes str.isdigit but not int(); bytes: neither.
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def invalid_record(exc: ValidationError) -> InvalidInput:
    """A body whose values parse, but make a call record that cannot be (a duration of 1e300):
    the problem names the record's field."""
    refused = invalid(exc, "record.")
    return InvalidInput(f"the call record made of this body: {refused.detail}", field=refused.field)


def parse_body(model: type[M], body: bytes) -> M:
    """Parse and validate in one pass (pydantic's own JSON parser); bad JSON is a MalformedBody.

    What the database cannot store is refused too, naming the field: NUL in text, and numbers
    that are not finite (NaN, Infinity, or too large for a float), which JSON columns reject.
    """
    if b"\\u0000" in body:  # JSON carries NUL only escaped; look closer only then
        # Too deep for json.loads is too deep for pydantic's parser too: a MalformedBody below.
        with contextlib.suppress(ValueError, RecursionError):
            where = _nul_at(json.loads(body))
            if where is not None:
                raise InvalidInput(f"{where or 'body'}: {_NO_NUL}", field=where or None)
    try:
        parsed = model.model_validate_json(body or b"null")
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise MalformedBody(f"body is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise invalid(exc) from None
    if b"NaN" in body or b"Infinity" in body:  # look closer only then
        require_finite(parsed)
    return parsed


# Only the JSON literals that pydantic's parser accepts (and the same strings) are looked for:
# two substring searches cost well under a microsecond on a webhook, a regex for every spelling
# (1e309, "inf") ten times the parse. Those other spellings reach a record's bounded fields
# (records.Number), which refuse them.
_NOT_FINITE = "must be a finite number (not NaN, Infinity or beyond a float's range)"


def require_finite(parsed: BaseModel) -> None:
    """Raise InvalidInput naming the first field of `parsed` that holds a non-finite float."""
    where = _not_finite_at(parsed)
    if where is not None:
        raise InvalidInput(f"{where or 'body'}: {_NOT_FINITE}", field=where or None)


def _not_finite_at(value: Any, path: str = "") -> str | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, RootModel):
        return _not_finite_at(value.root, path)
    items: list[tuple[Any, Any]]
    if isinstance(value, BaseModel):
        items = [(name, getattr(value, name)) for name in type(value).model_fields]
        items += list((value.model_extra or {}).items())
    elif isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    else:
        return None
    for key, item in items:
        found = _not_finite_at(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def parse_query(model: type[M], data: dict[str, Any]) -> M:
    """Query parameters are flat: an error names the parameter, not a position in it."""
    for name, value in data.items():
        if _nul_at(value) is not None:
            raise InvalidInput(f"{name}: {_NO_NUL}", field=name)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, depth=1) from None


def path_param(connection: Mapping[str, Any], name: str) -> str:
    """A path parameter (of a Request or an ASGI scope); one with a NUL cannot name anything."""
    value: str = connection["path_params"][name]
    if NUL in value:
        raise NotFound(f"no such {name.replace('_', ' ')}")
    return value


# The last millisecond of 9999-12-31 UTC: a later Unix time has no datetime.
MAX_EPOCH_MS = 253_402_300_799_999

NUL = "\x00"
_NO_NUL = "text must not contain NUL (\\u0000): the database cannot store it"


def _nul_at(value: Any, path: str = "") -> str | None:
    """The path of the first string (or key) holding a NUL character, if any."""
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if NUL in str(key):
                return inner
            found = _nul_at(item, inner)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_at(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None
