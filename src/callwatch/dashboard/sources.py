"""`/sources`: each source's webhook URL (with a copy button) and provider; adding a source.

A source from the form is parsed and created as `POST /api/sources` does it; its generated
webhook secret is shown once, on the page that answers the form.
"""

import json
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from callwatch import providers
from callwatch.dashboard.render import page
from callwatch.db import transaction
from callwatch.errors import RequestError
from callwatch.orgs import tenancy
from callwatch.orgs.endpoints import source_view
from callwatch.outbound import ssrf
from callwatch.runtime import utcnow
from callwatch.validation import parse_body
from callwatch.web.sessions import Viewer, services_of

SETTINGS = ("api_base_url", "detail_url")
CREDENTIALS = ("webhook_secret", "api_key")


def _page(
    request: Request,
    viewer: Viewer,
    *,
    error: str | None = None,
    created: dict[str, Any] | None = None,
    entered: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    runtime = services_of(request).runtime
    with transaction(runtime.sessions) as session:
        listed = [
            source_view(source, runtime.settings.public_url)
            for source in tenancy.list_sources(session, viewer.org_id)
        ]
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
