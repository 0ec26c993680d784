"""Parsing request bodies and query strings into pydantic models, with errors naming the field."""

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from callwatch.errors import InvalidInput, MalformedBody

M = TypeVar("M", bound=BaseModel)


def invalid(exc: ValidationError, prefix: str = "") -> InvalidInput:
    first = exc.errors()[0]
    field = prefix + ".".join(str(part) for part in first["loc"])
    return InvalidInput(f"{field}: {first['msg']}" if field else first["msg"], field=field or None)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedBody(f"body is not valid JSON: {exc}") from None


def parse_body(model: type[M], body: bytes) -> M:
    data = parse_json(body or b"null")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None


def parse_query(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None
