"""Bearer authentication: the admin token and org API keys."""

import hmac

from starlette.requests import Request

from callwatch.db import transaction
from callwatch.errors import Unauthorized
from callwatch.orgs import keys
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


def require_org(request: Request) -> str:
    """The org id of the request's API key (sync: call from a sync endpoint's thread).

    Looked up on every request, so a deleted key is refused from the next one on."""
    return require_key(request)[1]


def require_key(request: Request) -> tuple[str, str]:
    """(key id, org id) of the request's API key: for what keeps which key asked."""
    services: Services = request.app.state.services
    secret = _bearer(request)
    with transaction(services.runtime.sessions) as session:
        found = keys.identify(session, secret, services.runtime.clock())
    if found is None:
        raise Unauthorized("invalid API key")
    return found
