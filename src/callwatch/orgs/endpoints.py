"""Org management (admin token), and an org's API keys and sources (org API key), design.md §4."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callwatch.db import transaction
from callwatch.orgs import keys, tenancy
from callwatch.outbound import ssrf
from callwatch.runtime import utcnow
from callwatch.tables import Source
from callwatch.validation import parse_body, path_param, read_body
from callwatch.web.auth import require_admin, require_org
from callwatch.web.operations import Operation
from callwatch.web.services import Services


async def create_org(request: Request) -> JSONResponse:
    require_admin(request)
    data = parse_body(tenancy.OrgIn, await read_body(request))
    services: Services = request.app.state.services

    def create() -> dict[str, Any]:
        with transaction(services.runtime.sessions) as session:
            org, key = tenancy.create_org(session, data, utcnow())
            return OrgCreated(id=org.id, name=org.name, api_key=key).model_dump(mode="json")

    return JSONResponse(await run_in_threadpool(create), status_code=201)


def list_orgs(request: Request) -> JSONResponse:
    require_admin(request)
    services: Services = request.app.state.services
    with transaction(services.runtime.sessions) as session:
        found = keys.OrgList(items=keys.list_orgs(session))
    return JSONResponse(found.model_dump(mode="json"))


def list_keys(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    org_id = require_org(request)
    with transaction(services.runtime.sessions) as session:
        found = keys.KeyList(items=[keys.view(key) for key in keys.list_keys(session, org_id)])
    return JSONResponse(found.model_dump(mode="json"))


def create_key(request: Request, body: bytes) -> JSONResponse:
    services: Services = request.app.state.services
    org_id = require_org(request)
    data = parse_body(keys.KeyIn, body)
    with transaction(services.runtime.sessions) as session:
        key, secret = keys.issue(session, org_id, services.runtime.clock(), data.name)
        created = keys.KeyCreated(**keys.view(key).model_dump(), api_key=secret)
    return JSONResponse(created.model_dump(mode="json"), status_code=201)


async def add_key(request: Request) -> JSONResponse:
    body = await read_body(request)
    return await run_in_threadpool(create_key, request, body)


def delete_key(request: Request) -> Response:
    services: Services = request.app.state.services
    org_id = require_org(request)
    with transaction(services.runtime.sessions) as session:
        keys.revoke(session, org_id, path_param(request, "key_id"))
    return Response(status_code=204)


class OrgCreated(BaseModel):
    id: str
    name: str
    api_key: str = Field(description="shown once; stored hashed")


class SourceView(BaseModel):
    id: str
    name: str
    provider: str
    webhook_url: str = Field(description="point the platform's webhooks here")
    settings: dict[str, Any]
    created_at: datetime


class SourceCreated(SourceView):
    signing_secret: str | None = Field(None, description="shown once, for signed providers")


class SourceList(BaseModel):
    items: list[SourceView]


def source_view(source: Source, public_url: str) -> dict[str, Any]:
    return SourceView(
        id=source.id,
        name=source.name,
        provider=source.provider,
        webhook_url=tenancy.webhook_url(public_url, source),
        settings=source.settings,
        created_at=source.created_at,
    ).model_dump(mode="json")


def create_source(request: Request, body: bytes) -> JSONResponse:
    services: Services = request.app.state.services
    org_id = require_org(request)
    data = parse_body(tenancy.SourceIn, body)
    guard = ssrf.Guard(services.runtime.settings.allow_private_targets)
    with transaction(services.runtime.sessions) as session:
        source, secret = tenancy.create_source(
            session, services.runtime.vault, org_id, data, utcnow(), guard=guard
        )
        view = source_view(source, services.runtime.settings.public_url)
    if secret is not None:
        view["signing_secret"] = secret
    return JSONResponse(view, status_code=201)


async def add_source(request: Request) -> JSONResponse:
    body = await read_body(request)
    return await run_in_threadpool(create_source, request, body)


def list_sources(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    org_id = require_org(request)
    public_url = services.runtime.settings.public_url
    with transaction(services.runtime.sessions) as session:
        items = [source_view(s, public_url) for s in tenancy.list_sources(session, org_id)]
    return JSONResponse({"items": items})


ENDPOINTS = [
    Operation(
        create_org,
        "post",
        "/api/admin/orgs",
        "Create an org and its first API key",
        "admin",
        auth="admin",
        body=tenancy.OrgIn,
        ok=201,
        response=OrgCreated,
        errors=(409,),
    ),
    Operation(
        list_orgs,
        "get",
        "/api/admin/orgs",
        "List orgs with how many sources and keys each has",
        "admin",
        auth="admin",
        response=keys.OrgList,
    ),
    Operation(
        list_keys, "get", "/api/keys", "List the org's API keys", "keys", response=keys.KeyList
    ),
    Operation(
        add_key,
        "post",
        "/api/keys",
        "Create an API key",
        "keys",
        body=keys.KeyIn,
        ok=201,
        response=keys.KeyCreated,
        description="The reply carries the key, once; it is stored hashed.",
    ),
    Operation(
        delete_key,
        "delete",
        "/api/keys/{key_id}",
        "Delete an API key",
        "keys",
        ok=204,
        errors=(409,),
        description="The key is refused (401) from the next request on. The org's last key "
        "cannot be deleted (409): create another first.",
    ),
    Operation(
        list_sources,
        "get",
        "/api/sources",
        "List the org's sources",
        "sources",
        response=SourceList,
    ),
    Operation(
        add_source,
        "post",
        "/api/sources",
        "Add a source (a webhook URL for one platform account)",
        "sources",
        body=tenancy.SourceIn,
        ok=201,
        response=SourceCreated,
    ),
]
