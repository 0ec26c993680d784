"""The call record fields an alert rule can compare, and their kinds, read off CallRecord."""

import difflib
import enum
import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from callwatch.model.records import CallRecord


@dataclass(frozen=True)
class Field:
    kind: Literal["number", "text", "bool"]
    choices: tuple[str, ...] = ()  # the only values a text field can have, when known


def _field_of(annotation: Any) -> Field | type[BaseModel] | str:
    """A comparable field, a group of fields, or what else it is (a time, a list, a map)."""
    if get_origin(annotation) is Annotated:  # records.Number: a float with bounds
        return _field_of(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _field_of(options[0]) if len(options) == 1 else "a mixed value"
    if get_origin(annotation) is Literal:
        return Field("text", tuple(str(arg) for arg in get_args(annotation)))
    if get_origin(annotation) is list:
        return "a list"
    if get_origin(annotation) is dict:
        return "a map"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return annotation
        if issubclass(annotation, enum.Enum):
            return Field("text", tuple(str(member.value) for member in annotation))
        if annotation is bool:
            return Field("bool")
        if annotation in (int, float):
            return Field("number")
        if annotation is str:
            return Field("text")
        if annotation is datetime:
            return "a time"
    return "not a plain value"


def _fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Field | str]]:
    for name, info in model.model_fields.items():
        found = _field_of(info.annotation)
        if isinstance(found, Field | str):
            yield prefix + name, found
        else:
            yield from _fields(found, f"{prefix}{name}.")


_ALL = dict(_fields(CallRecord))
FIELDS: dict[str, Field] = {path: kind for path, kind in _ALL.items() if isinstance(kind, Field)}
# Record fields that exist but cannot be compared: what each is instead.
OTHERS: dict[str, str] = {path: kind for path, kind in _ALL.items() if isinstance(kind, str)}


KIND_NAMES = {"text": "text", "bool": "true or false", "number": "a number"}


def unknown(path: str) -> str:
    """Why `path` names no comparable field, and what it might have meant."""
    if path.split(".")[0] == "evaluations":
        return "'evaluations' is a list: use 'any evaluation failed'"
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        whole = ".".join(parts[:end])
        if whole in OTHERS:
            return f"'{whole}' is {OTHERS[whole]} and cannot be compared"
    inside = sorted(name for name in FIELDS if name.startswith(path + "."))
    if inside:
        shown = ", ".join(inside[:6]) + (", …" if len(inside) > 6 else "")
        return f"'{path}' is a group: name one of its fields ({shown})"
    close = difflib.get_close_matches(path, FIELDS, n=1)
    return f"unknown field '{path}'" + (f"; did you mean '{close[0]}'?" if close else "")
