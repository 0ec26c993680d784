"""`/sources`: each source's webhook URL (with a copy button), provider and traffic over the
chosen window (`activity`); adding a source;
rotating its token or secret, disabling, enabling and deleting it (after a confirm page).

A source from the form is parsed and created as `POST /api/sources` does it; its generated
webhook secret is shown once, on the page that answers the form. Each change calls what its
`/api/sources/{id}…` endpoint calls (orgs.sources), and this process's token cache forgets.
"""

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from callwatch import providers
from callwatch.dashboard import activity
from callwatch.dashboard.render import page
from callwatch.db import transaction
from callwatch.errors import RequestError
from callwatch.orgs import sources as org_sources
from callwatch.orgs import tenancy
from callwatch.orgs.endpoints import source_view
from callwatch.outbound import ssrf
from callwatch.runtime import utcnow
from callwatch.tables import Source
from callwatch.validation import parse_body, path_param
from callwatch.web.services import services_of
from callwatch.web.sessions import Viewer

SETTINGS = ("api_base_url", "detail_url")
CREDENTIALS = ("webhook_secret", "api_key")


def _page(
    request: Request,
    viewer: Viewer,
    *,
    error: str | None = None,
    created: dict[str, Any] | None = None,
    entered: dict[str, str] | None = None,
    rotated: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    runtime = services_of(request).runtime
    with transaction(runtime.sessions) as session:
        listed = [
            source_view(source, runtime.settings.public_url)
            for source in tenancy.list_sources(session, viewer.org_id)
        ]
    window, now = activity.chosen_window(request), runtime.clock()
    board = activity.board(runtime, viewer.org_id, now - activity.WINDOWS[window], now)
    return page(
        request,
        "sources.html",
        {
            "viewer": viewer,
            "sources": listed,
            "providers": providers.names(),
            "error": error,
            "created": created,
            "entered": entered or {},
            "rotated": rotated,
            "window": window,
            "windows": list(activity.WINDOWS),
            "traffic": {source["id"]: board.of(source["id"]) for source in listed},
            "counted": board.counted,
        },
        status_code,
    )


def sources(request: Request, viewer: Viewer) -> Response:
    return _page(request, viewer)


def source_of(form: FormData) -> dict[str, Any]:
    """The API's JSON body for the form's fields (blank fields left out)."""
    given = {name: str(value).strip() for name, value in form.items()}
    return {
        "name": given.get("name", ""),
        "provider": given.get("provider", ""),
        "settings": {name: given[name] for name in SETTINGS if given.get(name)},
        "credentials": {name: given[name] for name in CREDENTIALS if given.get(name)},
    }


def create_source(request: Request, viewer: Viewer, form: FormData) -> Response:
    runtime = services_of(request).runtime
    entered = {name: str(form.get(name, "")) for name in ("name", "provider", *SETTINGS)}
    try:
        data = parse_body(tenancy.SourceIn, json.dumps(source_of(form)).encode())
        guard = ssrf.Guard(runtime.settings.allow_private_targets)
        with transaction(runtime.sessions) as session:
            source, secret = tenancy.create_source(
                session, runtime.vault, viewer.org_id, data, utcnow(), guard=guard
            )
            created = source_view(source, runtime.settings.public_url)
    except RequestError as exc:
        return _page(
            request, viewer, error=exc.detail, entered=entered, status_code=exc.status_code
        )
    created["webhook_secret"] = secret
    return _page(request, viewer, created=created, status_code=201)


def _change(
    request: Request, viewer: Viewer, change: Callable[[Session, Source], str | None]
) -> dict[str, Any] | Response:
    """Apply `change` to the path's source of the viewer's org: its view after, with the secret
    `change` returned (if any); or the page saying why not."""
    runtime = services_of(request).runtime
    try:
        with transaction(runtime.sessions) as session:
            source = org_sources.get(session, viewer.org_id, path_param(request, "source_id"))
            secret = change(session, source)
            view = source_view(source, runtime.settings.public_url)
    except RequestError as exc:
        return _page(request, viewer, error=exc.detail, status_code=exc.status_code)
    services_of(request).intake.sources.forget()  # others within source_cache_s, as the API
    return view | ({"webhook_secret": secret} if secret else {})


def rotate_token(request: Request, viewer: Viewer, form: FormData) -> Response:
    def rotate(session: Session, source: Source) -> None:
        org_sources.rotate_token(session, source, org_sources.DEFAULT_OVERLAP_S, utcnow())

    view = _change(request, viewer, rotate)
    return view if isinstance(view, Response) else _page(request, viewer, rotated=view)


def rotate_secret(request: Request, viewer: Viewer, form: FormData) -> Response:
    vault = services_of(request).runtime.vault

    def rotate(session: Session, source: Source) -> str:
        return org_sources.rotate_secret(source, vault, org_sources.DEFAULT_OVERLAP_S, utcnow())

    view = _change(request, viewer, rotate)
    return view if isinstance(view, Response) else _page(request, viewer, rotated=view)


def set_enabled(request: Request, viewer: Viewer, form: FormData) -> Response:
    patch = org_sources.SourcePatch(enabled=form.get("enabled") == "true")
    vault = services_of(request).runtime.vault

    def update(session: Session, source: Source) -> str | None:
        return org_sources.update(session, vault, source, patch, None, utcnow())

    view = _change(request, viewer, update)
    return view if isinstance(view, Response) else RedirectResponse("/sources", 303)


def confirm_delete(request: Request, viewer: Viewer) -> Response:
    runtime = services_of(request).runtime
    try:
        with transaction(runtime.sessions) as session:
            source = org_sources.get(session, viewer.org_id, path_param(request, "source_id"))
            name, source_id = source.name, source.id
    except RequestError as exc:
        return _page(request, viewer, error=exc.detail, status_code=exc.status_code)
    context = {
        "viewer": viewer,
        "title": f"Delete the source {name}?",
        "consequence": "Its webhook URL answers 404 from now on; its calls stay.",
        "action": f"/sources/{source_id}/delete",
        "button": "Delete source",
        "back": "/sources",
    }
    return page(request, "confirm.html", context)


def delete(request: Request, viewer: Viewer, form: FormData) -> Response:
    def remove(session: Session, source: Source) -> None:
        org_sources.delete(session, source, utcnow())

    view = _change(request, viewer, remove)
    return view if isinstance(view, Response) else RedirectResponse("/sources", 303)
