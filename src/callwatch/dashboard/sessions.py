"""Dashboard sign-in: a signed session cookie naming an API key, and CSRF tokens for forms.

The cookie holds the key's id (never the key itself), its org and the session's CSRF token,
signed with the service's secret key and dated: it is refused once older than
CALLWATCH_DASHBOARD_SESSION_S, and the key is looked up on every request, so a revoked key's
sessions end with the next page.
"""

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from callwatch.db import transaction
from callwatch.errors import Unauthorized
from callwatch.orgs import keys
from callwatch.runtime import secret_key
from callwatch.web.services import Services

SESSION_COOKIE = "callwatch_session"
LOGIN_COOKIE = "callwatch_login"  # the CSRF token of the sign-in form, before any session
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the org whose key signed in, and the session's CSRF token."""

    org_id: str
    key_id: str
    csrf: str


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to /login."""


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _serializer(request: Request, salt: str) -> URLSafeTimedSerializer:
    settings = services_of(request).runtime.settings
    return URLSafeTimedSerializer(secret_key(settings), salt=salt)


def _max_age(request: Request) -> int:
    return services_of(request).runtime.settings.dashboard_session_s


def sign_in(request: Request, api_key: str) -> Viewer:
    """The viewer this API key makes, or Unauthorized."""
    runtime = services_of(request).runtime
    with transaction(runtime.sessions) as session:
        found = keys.identify(session, api_key.strip(), runtime.clock())
    if found is None:
        raise Unauthorized("that API key is not valid")
    key_id, org_id = found
    return Viewer(org_id=org_id, key_id=key_id, csrf=new_token())


def viewer(request: Request) -> Viewer:
    """The signed-in viewer, or SignInRequired: no cookie, a bad or expired one, a revoked key."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise SignInRequired
    try:
        data = _serializer(request, "session").loads(cookie, max_age=_max_age(request))
        found = Viewer(org_id=data["o"], key_id=data["k"], csrf=data["c"])
    except (BadSignature, KeyError, TypeError):
        raise SignInRequired from None
    with transaction(services_of(request).runtime.sessions) as session:
        if keys.org_of_key(session, found.key_id) != found.org_id:
            raise SignInRequired
    return found


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def keep(request: Request, response: Response, signed_in: Viewer) -> None:
    """Set the session cookie on `response`."""
    value = _serializer(request, "session").dumps(
        {"o": signed_in.org_id, "k": signed_in.key_id, "c": signed_in.csrf}
    )
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=_max_age(request),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE)


def end(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def keep_login_token(request: Request, response: Response, token: str) -> None:
    """The sign-in form's CSRF token, kept (signed) in a short-lived cookie."""
    response.set_cookie(
        LOGIN_COOKIE,
        _serializer(request, "login").dumps(token),
        max_age=3600,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


def login_token_matches(request: Request, sent: str) -> bool:
    try:
        kept = _serializer(request, "login").loads(
            request.cookies.get(LOGIN_COOKIE, ""), max_age=3600
        )
    except BadSignature:
        return False
    return isinstance(kept, str) and hmac.compare_digest(kept.encode(), sent.encode())


def csrf_matches(signed_in: Viewer, sent: str) -> bool:
    return hmac.compare_digest(signed_in.csrf.encode(), sent.encode())
