"""Org management (admin token), and an org's API keys and sources (org API key), design.md §4."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callwatch.db import transaction
from callwatch.orgs import data_settings, keys, sources, tenancy
from callwatch.outbound import ssrf
from callwatch.runtime import utcnow
from callwatch.tables import Source
from callwatch.validation import parse_body, path_param, read_body
from callwatch.web.auth import require_admin, require_org
from callwatch.web.operations import Operation, with_body
from callwatch.web.services import Services, services_of

BASE = "/api/sources"
ONE = BASE + "/{source_id}"
TAG = "sources"


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
    enabled: bool = Field(description="false: its webhooks answer 410")
    previous_token_expires_at: datetime | None = Field(
        description="after a token rotation, the previous webhook URL works until then"
    )
    previous_secret_expires_at: datetime | None = Field(
        description="after a secret rotation, the previous secret verifies until then"
    )
    created_at: datetime
    updated_at: datetime | None


class SourceCreated(SourceView):
    webhook_secret: str | None = Field(
        None, description="the secret callwatch generated for it, shown once (generic: whsec_…)"
    )


class SourceList(BaseModel):
    items: list[SourceView]


class SecretRotated(BaseModel):
    id: str
    webhook_secret: str = Field(description="the new whsec_… secret; shown once")
    previous_secret_expires_at: datetime | None = Field(
        description="the previous secret keeps verifying until then"
    )


def source_view(source: Source, public_url: str, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    token_until, secret_until = source.previous_token_until, source.previous_secret_until
    return SourceView(
        id=source.id,
        name=source.name,
        provider=source.provider,
        webhook_url=tenancy.webhook_url(public_url, source),
        settings=source.settings,
        enabled=source.enabled is not False,
        previous_token_expires_at=token_until if token_until and token_until > now else None,
        previous_secret_expires_at=secret_until if secret_until and secret_until > now else None,
        created_at=source.created_at,
        updated_at=source.updated_at,
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
        view["webhook_secret"] = secret
    return JSONResponse(view, status_code=201)


def list_sources(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    org_id = require_org(request)
    public_url = services.runtime.settings.public_url
    with transaction(services.runtime.sessions) as session:
        items = [source_view(s, public_url) for s in tenancy.list_sources(session, org_id)]
    return JSONResponse({"items": items})


def _changed(request: Request) -> None:
    """This process's webhook token cache forgets at once (others within source_cache_s)."""
    services_of(request).intake.sources.forget()


def get_source(request: Request) -> JSONResponse:
    services = services_of(request)
    org_id = require_org(request)
    with transaction(services.runtime.sessions) as session:
        source = sources.get(session, org_id, path_param(request, "source_id"))
        return JSONResponse(source_view(source, services.runtime.settings.public_url))


def patch_source(request: Request, body: bytes) -> JSONResponse:
    services = services_of(request)
    org_id = require_org(request)
    changes = parse_body(sources.SourcePatch, body)
    source_id = path_param(request, "source_id")
    rt = services.runtime
    with transaction(rt.sessions) as session:  # a read: the settings to vet
        settings = sources.merged_settings(sources.get(session, org_id, source_id), changes)
    sources.vet(settings, ssrf.Guard(rt.settings.allow_private_targets))
    with transaction(rt.sessions) as session:
        source = sources.get(session, org_id, source_id)
        secret = sources.update(session, rt.vault, source, changes, settings, utcnow())
        view = source_view(source, rt.settings.public_url)
    _changed(request)
    if secret is not None:
        view["webhook_secret"] = secret
    return JSONResponse(view)


def delete_source(request: Request) -> Response:
    services = services_of(request)
    org_id = require_org(request)
    with transaction(services.runtime.sessions) as session:
        source = sources.get(session, org_id, path_param(request, "source_id"))
        sources.delete(session, source, utcnow())
    _changed(request)
    return Response(status_code=204)


def _rotation(body: bytes) -> sources.Rotation:
    return parse_body(sources.Rotation, body) if body.strip() else sources.Rotation()


def rotate_token(request: Request, body: bytes) -> JSONResponse:
    services = services_of(request)
    org_id = require_org(request)
    rotation = _rotation(body)
    with transaction(services.runtime.sessions) as session:
        source = sources.get(session, org_id, path_param(request, "source_id"))
        sources.rotate_token(session, source, rotation.overlap_s, utcnow())
        view = source_view(source, services.runtime.settings.public_url)
    _changed(request)
    return JSONResponse(view)


def rotate_secret(request: Request, body: bytes) -> JSONResponse:
    services = services_of(request)
    org_id = require_org(request)
    rotation = _rotation(body)
    rt = services.runtime
    with transaction(rt.sessions) as session:
        source = sources.get(session, org_id, path_param(request, "source_id"))
        secret = sources.rotate_secret(source, rt.vault, rotation.overlap_s, utcnow())
        until = source_view(source, rt.settings.public_url)["previous_secret_expires_at"]
    _changed(request)
    rotated = SecretRotated(id=source.id, webhook_secret=secret, previous_secret_expires_at=until)
    return JSONResponse(rotated.model_dump(mode="json"))


def get_data_settings(request: Request) -> JSONResponse:
    org_id = require_org(request)
    with transaction(services_of(request).runtime.sessions) as session:
        found = data_settings.get(session, org_id)
    return JSONResponse(found.model_dump(mode="json"))


def patch_data_settings(request: Request, body: bytes) -> JSONResponse:
    org_id = require_org(request)
    change = parse_body(data_settings.DataSettingsPatch, body)
    with transaction(services_of(request).runtime.sessions) as session:
        updated = data_settings.patch(session, org_id, change, utcnow())
    return JSONResponse(updated.model_dump(mode="json"))


_OVERLAP = (
    "The body is optional: `overlap_s` (default 86400, 0: at once) is how long the previous "
    "one keeps working; a previous one still in its overlap stops now. Other receiver "
    "processes see the change within `source_cache_s`."
)

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
        with_body(create_key),
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
        BASE,
        "List the org's sources",
        TAG,
        response=SourceList,
        description="Deleted sources are left out.",
    ),
    Operation(
        with_body(create_source),
        "post",
        BASE,
        "Add a source (a webhook URL for one platform account)",
        TAG,
        body=tenancy.SourceIn,
        ok=201,
        response=SourceCreated,
        errors=(409,),
        description="Credentials are never returned; `webhook_secret` is in the reply (once) "
        "when callwatch generated it.",
    ),
    Operation(get_source, "get", ONE, "Get a source", TAG, response=SourceView),
    Operation(
        with_body(patch_source),
        "patch",
        ONE,
        "Change a source",
        TAG,
        body=sources.SourcePatch,
        response=SourceCreated,
        errors=(409,),
        description="Only the fields given change. `settings` and `credentials` are merged "
        "into the stored ones and validated as at creation (a key set to null is removed); "
        "credentials are never returned. `enabled: false`: its webhooks answer 410.",
    ),
    Operation(
        delete_source,
        "delete",
        ONE,
        "Delete a source",
        TAG,
        ok=204,
        response=None,
        description="Its webhook tokens answer 404 from then on; its calls stay, their source "
        "named `<name> (deleted <id>)` (the name is free for a new source).",
    ),
    Operation(
        with_body(rotate_token),
        "post",
        ONE + "/rotate-token",
        "Rotate the webhook token (a new webhook URL)",
        TAG,
        body=sources.Rotation,
        response=SourceView,
        description=_OVERLAP,
    ),
    Operation(
        with_body(rotate_secret),
        "post",
        ONE + "/rotate-secret",
        "Rotate the webhook secret callwatch generated",
        TAG,
        body=sources.Rotation,
        response=SecretRotated,
        errors=(409,),
        description="For platforms whose secret callwatch generates (generic's whsec_…): the "
        "new one is shown once, and both verify during the overlap. 409 for a platform that "
        "issues its own secret. " + _OVERLAP,
    ),
    Operation(
        get_data_settings,
        "get",
        "/api/settings",
        "The org's data settings: retention, recording archive, redaction",
        "settings",
        response=data_settings.DataSettings,
    ),
    Operation(
        with_body(patch_data_settings),
        "patch",
        "/api/settings",
        "Change some of the org's data settings",
        "settings",
        body=data_settings.DataSettingsPatch,
        response=data_settings.DataSettings,
        description="Fields left out stay as they are; a retention of null keeps data for ever. "
        "`archive_recordings: false` leaves recordings that become available from then on "
        "`skipped`; those archived stay.",
    ),
]
