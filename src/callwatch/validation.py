"""Parsing request bodies and query strings into pydantic models, with errors naming the field."""

import contextlib
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from callwatch.errors import InvalidInput, MalformedBody, NotFound

M = TypeVar("M", bound=BaseModel)


def invalid(exc: ValidationError, prefix: str = "", *, depth: int | None = None) -> InvalidInput:
    """The first error, naming its field (`depth` keeps only that many parts of its path)."""
    first = exc.errors()[0]
    field = prefix + ".".join(str(part) for part in first["loc"][:depth])
    return InvalidInput(f"{field}: {first['msg']}" if field else first["msg"], field=field or None)


def parse_body(model: type[M], body: bytes) -> M:
    """Parse and validate in one pass (pydantic's own JSON parser); bad JSON is a MalformedBody."""
    if b"\\u0000" in body:  # JSON carries NUL only escaped; look closer only then
        with contextlib.suppress(ValueError):
            where = _nul_at(json.loads(body))
            if where is not None:
                raise InvalidInput(f"{where or 'body'}: {_NO_NUL}", field=where or None)
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise MalformedBody(f"body is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise invalid(exc) from None


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
