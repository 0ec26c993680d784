"""An API operation as the OpenAPI document describes it: route, models, auth, errors."""

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

Auth = Literal["admin", "org"] | None


@dataclass(frozen=True)
class ListOf:
    model: type[BaseModel]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    auth: Auth = "org"
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    ok: int = 200
    response: type[BaseModel] | ListOf | dict[str, str] | None = None  # dict: media type → text
    errors: tuple[int, ...] = ()  # beyond those that follow from auth, body, query and path
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
