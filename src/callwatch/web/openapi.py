"""The OpenAPI 3.1 document, generated from the pydantic models each route parses and returns."""

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from callwatch.query.filters import ALIASES
from callwatch.web.operations import ListOf, Operation
from callwatch.web.problems import Problem

REF = "#/components/schemas/{model}"

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "admin": [{"adminToken": []}],
    "org": [{"apiKey": []}],
}


def document(version: str, operations: Sequence[Operation]) -> dict[str, Any]:
    """The whole OpenAPI document for these operations."""
    uses: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Problem, "serialization")]
    for operation in operations:
        for model, mode in _models_of(operation):
            if (model, mode) not in uses:
                uses.append((model, mode))
    refs, definitions = models_json_schema(uses, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callwatch",
            "version": version,
            "description": "Voice-call webhooks in, assembled call records out.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "an org API key"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "admin token"},
            },
        },
    }


def _models_of(operation: Operation) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    if operation.query is not None:
        found.append((operation.query, "validation"))
    if operation.body is not None:
        found.append((operation.body, "validation"))
    response = operation.response
    if isinstance(response, ListOf):
        found.append((response.model, "serialization"))
    elif isinstance(response, type):
        found.append((response, "serialization"))
    return found


def _operation(operation: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "summary": operation.summary,
        "tags": [operation.tag],
        "operationId": _operation_id(operation),
        "parameters": _path_parameters(operation.path) + _query_parameters(operation),
        "responses": {str(operation.ok): _success(operation, refs)},
    }
    if operation.description:
        spec["description"] = operation.description
    if operation.auth is not None:
        spec["security"] = _SECURITY[operation.auth]
    if operation.body is not None:
        spec["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(operation.body, "validation")]}},
        }
    for status in _errors_of(operation):
        spec["responses"][str(status)] = {
            "description": _ERRORS[status],
            "content": {"application/problem+json": {"schema": refs[(Problem, "serialization")]}},
        }
    # Answers that are neither the success nor a problem (a partial file, a redirect).
    for status, text in operation.extra.get("responses", {}).items():
        spec["responses"][str(status)] = {"description": text}
    return spec


def _errors_of(operation: Operation) -> list[int]:
    errors = set(operation.errors)
    if operation.auth is not None:
        errors |= {401, 503}
    if operation.body is not None:
        errors |= {400, 422, 503}
    if operation.query is not None:
        errors.add(422)
    if "{" in operation.path:
        errors.add(404)
    return sorted(errors)


def _operation_id(operation: Operation) -> str:
    words = re.sub(r"[^a-z0-9]+", "_", f"{operation.method} {operation.path}".lower())
    return words.strip("_")


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]


def _query_parameters(operation: Operation) -> list[dict[str, Any]]:
    if operation.query is None:
        return []
    schema = operation.query.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema["properties"].items():
        if operation.path.startswith("/api/agents/") and name == "agent_id":
            continue  # the path says which agent
        description = prop.pop("description", None)
        prop = _present(prop)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            parameter["description"] = description
        if prop.get("type") == "array":
            parameter |= {"style": "form", "explode": True}
        parameters.append(parameter)
        if name in ALIASES.values() and not operation.path.startswith("/api/agents/"):
            alias = next(key for key, value in ALIASES.items() if value == name)
            parameters.append(parameter | {"name": alias, "description": f"alias of {name}"})
    return parameters


def _present(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is sent or not; it cannot be null."""
    schema = {key: value for key, value in schema.items() if key not in ("title", "default")}
    options: list[dict[str, Any]] = [
        option for option in schema.pop("anyOf", []) if option != {"type": "null"}
    ]
    if len(options) == 1:
        return schema | options[0]
    return schema | ({"anyOf": options} if options else {})


def _success(operation: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    response = operation.response
    if response is None:
        return {"description": "done"}
    if isinstance(response, dict):
        return {
            "description": "a streamed file",
            "content": {
                media: {"schema": {"type": "string", "description": text}}
                for media, text in response.items()
            },
        }
    if isinstance(response, ListOf):
        schema = {"type": "array", "items": refs[(response.model, "serialization")]}
    else:
        schema = refs[(response, "serialization")]
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    400: "the body is not parseable",
    401: "missing or invalid credentials or signature",
    404: "not found (or another org's)",
    409: "conflicts with what exists (a duplicate name, or a state that forbids it)",
    410: "gone: the source is disabled",
    413: "body over the limit",
    416: "the Range asks for bytes the file does not have; `Content-Range` gives its size",
    422: "a parameter or field is invalid; `field` names it",
    429: "over the rate limit; `Retry-After` says when to retry",
    503: "the database is unreachable; retry",
}
