"""`/openapi.json` and `/docs`: the generated document, and a page that needs no network."""

import html
import json
from importlib.metadata import version
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from callwatch.web import openapi
from callwatch.web.operations import operations


def spec(app: Starlette) -> dict[str, Any]:
    """The document of the routes `app` serves, made at its first request."""
    if not hasattr(app.state, "openapi"):
        app.state.openapi = openapi.document(version("callwatch"), operations(app.routes))
    document: dict[str, Any] = app.state.openapi
    return document


def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(spec(request.app))


def page(request: Request) -> HTMLResponse:
    return HTMLResponse(_render(spec(request.app)))


# The document and its page are not operations of the API they describe.
ROUTES = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", page, methods=["GET"]),
]


def _render(document: dict[str, Any]) -> str:
    parts = [
        "<!doctype html><meta charset=utf-8><title>callwatch API</title>",
        f"<style>{_STYLE}</style>",
        f"<h1>callwatch API <small>{html.escape(document['info']['version'])}</small></h1>",
        "<p>The machine-readable document is <a href=/openapi.json>/openapi.json</a>. "
        "Send <code>Authorization: Bearer &lt;org API key&gt;</code>.</p>",
    ]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            parts.append(_operation(method, path, operation))
    parts.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        body = html.escape(json.dumps(schema, indent=2))
        parts.append(
            f"<details id=schema-{name}><summary>{name}</summary><pre>{body}</pre></details>"
        )
    return "\n".join(parts)


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
        f"<td>{html.escape(_type(p['schema']))}</td><td>{'yes' if p['required'] else ''}</td>"
        f"<td>{html.escape(p.get('description', ''))}</td></tr>"
        for p in operation["parameters"]
    )
    table = (
        f"<table><tr><th>parameter<th>in<th>type<th>required<th>meaning</tr>{rows}</table>"
        if rows
        else ""
    )
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    request = f"<p>Body: {_link(body['schema'])}</p>" if body else ""
    responses = "".join(
        f"<li><b>{status}</b> {html.escape(answer['description'])} "
        f"{' '.join(_link(c['schema']) for c in answer.get('content', {}).values())}</li>"
        for status, answer in operation["responses"].items()
    )
    return (
        f"<section><h2><span class=method>{method.upper()}</span> <code>{html.escape(path)}</code>"
        f"</h2><p>{html.escape(operation['summary'])}. "
        f"{html.escape(operation.get('description', ''))}</p>{table}{request}<ul>{responses}</ul>"
        "</section>"
    )


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[1]
    if "anyOf" in schema:
        return " | ".join(_type(option) for option in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " | ".join(str(value) for value in schema["enum"])
    return str(schema.get("type", "any"))


def _link(schema: dict[str, Any]) -> str:
    name = _type(schema)
    target = schema.get("$ref") or schema.get("items", {}).get("$ref")
    if target:
        return f"<a href=#schema-{target.rsplit('/', 1)[1]}>{html.escape(name)}</a>"
    return html.escape(name)


_STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
    ".method{background:#234;color:#fff;padding:0 6px;border-radius:3px}pre{overflow:auto}"
)
