"""Bearer authentication: the admin token and org API keys; a dashboard session where asked."""

import hmac

from starlette.requests import Request

from callwatch.db import transaction
from callwatch.errors import Unauthorized
from callwatch.orgs import keys
from callwatch.web import sessions
from callwatch.web.services import Services


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send `Authorization: Bearer <key>`")
    return token.strip()


def require_admin(request: Request) -> None:
    services: Services = request.app.state.services
    # Bytes: compare_digest refuses str that is not ASCII (a header is any latin-1 text).
    if not hmac.compare_digest(_bearer(request).encode(), services.admin_token.encode()):
        raise Unauthorized("invalid admin token")


def require_org(request: Request, *, session: bool = False) -> str:
    """The org id of the request's API key (sync: call from a sync endpoint's thread).

    Looked up on every request, so a deleted key is refused from the next one on. With
    `session`, a request without an Authorization header may show a dashboard session instead
    (for what a page's elements fetch, as an audio player its recording; only reads: the
    session's CSRF token guards the dashboard's forms, not the API)."""
    if session and "authorization" not in request.headers:
        try:
            return sessions.viewer(request).org_id
        except sessions.SignInRequired:
            raise Unauthorized("send `Authorization: Bearer <key>` or sign in") from None
    return require_key(request)[1]


def require_key(request: Request) -> tuple[str, str]:
    """(key id, org id) of the request's API key: for what keeps which key asked."""
    services: Services = request.app.state.services
    secret = _bearer(request)
    with transaction(services.runtime.sessions) as db:
        found = keys.identify(db, secret, services.runtime.clock())
    if found is None:
        raise Unauthorized("invalid API key")
    return found
