"""Parsing request bodies and query strings into pydantic models, with errors naming the field."""

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from callwatch.errors import InvalidInput, MalformedBody

M = TypeVar("M", bound=BaseModel)


def invalid(exc: ValidationError, prefix: str = "", *, depth: int | None = None) -> InvalidInput:
    """The first error, naming its field (`depth` keeps only that many parts of its path)."""
    first = exc.errors()[0]
    field = prefix + ".".join(str(part) for part in first["loc"][:depth])
    return InvalidInput(f"{field}: {first['msg']}" if field else first["msg"], field=field or None)


def parse_body(model: type[M], body: bytes) -> M:
    """Parse and validate in one pass (pydantic's own JSON parser); bad JSON is a MalformedBody."""
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise MalformedBody(f"body is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise invalid(exc) from None


def parse_query(model: type[M], data: dict[str, Any]) -> M:
    """Query parameters are flat: an error names the parameter, not a position in it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, depth=1) from None
