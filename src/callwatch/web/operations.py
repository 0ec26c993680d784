"""A route declared once: an `Operation` is its handler and what the OpenAPI document says of it.

Each package's `endpoints` module lists its operations (`ENDPOINTS`); `routes` makes them the
Starlette routes the app mounts, and the OpenAPI document is generated from those routes.
"""

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from callwatch.validation import read_body

Auth = Literal["admin", "org"] | None


def with_body(handler: Callable[[Request, bytes], Response]) -> Callable[..., Any]:
    """An async endpoint that reads the body, then runs `handler` in the thread pool."""

    async def endpoint(request: Request) -> Response:
        body = await read_body(request)
        return await run_in_threadpool(handler, request, body)

    return endpoint


@dataclass(frozen=True)
class ListOf:
    model: type[BaseModel]


@dataclass(frozen=True)
class Operation:
    handler: Callable[..., Any]  # a Starlette endpoint function, or a plain ASGI app
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


class DocumentedRoute(Route):
    """One path's operations as one route: a 405 names every method the path allows."""

    def __init__(self, path: str, operations: Sequence[Operation]) -> None:
        self.operations = list(operations)
        methods = [operation.method.upper() for operation in operations]
        if len(operations) == 1:
            super().__init__(path, operations[0].handler, methods=methods)
        else:
            by_method = {op.method.upper(): _asgi(op.handler) for op in operations}
            super().__init__(path, _ByMethod(by_method), methods=methods)


class _ByMethod:
    def __init__(self, apps: dict[str, ASGIApp]) -> None:
        self._apps = apps | ({"HEAD": apps["GET"]} if "GET" in apps else {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._apps[scope["method"]](scope, receive, send)


def _asgi(handler: Callable[..., Any]) -> ASGIApp:
    """As Route makes one: a function is an endpoint taking a Request, anything else is ASGI."""
    if inspect.isfunction(handler) or inspect.ismethod(handler):
        return request_response(handler)
    return handler


def routes(operations: Sequence[Operation]) -> list[DocumentedRoute]:
    """A route per path, in the order the paths first appear (Starlette tries them in order)."""
    by_path: dict[str, list[Operation]] = {}
    for operation in operations:
        by_path.setdefault(operation.path, []).append(operation)
    return [DocumentedRoute(path, group) for path, group in by_path.items()]


def operations(served: Sequence[BaseRoute]) -> list[Operation]:
    return [op for route in served if isinstance(route, DocumentedRoute) for op in route.operations]
