"""Dashboard sessions: a signed cookie naming a server-side session, and CSRF tokens for forms.

The cookie holds a random session id, the key's id (never the key itself), its org and the
session's CSRF token, signed with the service's secret key and dated: it is refused once older
than CALLWATCH_DASHBOARD_SESSION_S. The session id must also be live in Redis (`SESSION_PREFIX`,
expiring with the cookie): signing out deletes it, so a copy of the cookie taken before is
refused too. And the key is looked up on every request, so a revoked key's sessions end with the
next page. Here, not in the dashboard, because `require_org` accepts a session where an endpoint
asks it to (the recording an audio player fetches).
"""

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis import Redis, RedisError
from starlette.requests import Request
from starlette.responses import Response

from callwatch.db import transaction
from callwatch.errors import StoreUnavailable, Unauthorized
from callwatch.orgs import keys
from callwatch.runtime import secret_key
from callwatch.web.services import services_of

SESSION_COOKIE = "callwatch_session"
LOGIN_COOKIE = "callwatch_login"  # the CSRF token of the sign-in form, before any session
CSRF_FIELD = "csrf_token"
SESSION_PREFIX = "callwatch:dashboard:session:"  # + the session id → the key id, with a TTL


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the org whose key signed in, and the session's CSRF token."""

    org_id: str
    key_id: str
    csrf: str
    session_id: str


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to /login."""


def _serializer(request: Request, salt: str) -> URLSafeTimedSerializer:
    settings = services_of(request).runtime.settings
    return URLSafeTimedSerializer(secret_key(settings), salt=salt)


def _max_age(request: Request) -> int:
    return services_of(request).runtime.settings.dashboard_session_s


def _redis(request: Request) -> Redis:
    client = services_of(request).runtime.redis
    if client is None:
        raise StoreUnavailable("dashboard sessions need Redis (CALLWATCH_REDIS_URL)")
    return client


def _session_store_down(exc: RedisError) -> StoreUnavailable:
    return StoreUnavailable(f"session store unavailable: {type(exc).__name__}")


def sign_in(request: Request, api_key: str) -> Viewer:
    """The viewer this API key makes, its session stored, or Unauthorized."""
    runtime = services_of(request).runtime
    with transaction(runtime.sessions) as session:
        found = keys.identify(session, api_key.strip(), runtime.clock())
    if found is None:
        raise Unauthorized("that API key is not valid")
    key_id, org_id = found
    signed_in = Viewer(org_id=org_id, key_id=key_id, csrf=new_token(), session_id=new_token())
    try:
        _redis(request).set(SESSION_PREFIX + signed_in.session_id, key_id, ex=_max_age(request))
    except RedisError as exc:
        raise _session_store_down(exc) from None
    return signed_in


def viewer(request: Request) -> Viewer:
    """The signed-in viewer, or SignInRequired: no cookie, a bad or expired one, a session
    signed out, a revoked key."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise SignInRequired
    try:
        data = _serializer(request, "session").loads(cookie, max_age=_max_age(request))
        found = Viewer(org_id=data["o"], key_id=data["k"], csrf=data["c"], session_id=data["s"])
    except (BadSignature, KeyError, TypeError):
        raise SignInRequired from None
    try:
        live = _redis(request).get(SESSION_PREFIX + found.session_id)
    except RedisError as exc:
        raise _session_store_down(exc) from None
    if live is None or live not in (found.key_id, found.key_id.encode()):
        raise SignInRequired
    with transaction(services_of(request).runtime.sessions) as session:
        if keys.org_of_key(session, found.key_id) != found.org_id:
            raise SignInRequired
    return found


def sign_out(request: Request, signed_in: Viewer) -> None:
    """End the session on the server: its cookie, and every copy of it, is refused from now on."""
    try:
        _redis(request).delete(SESSION_PREFIX + signed_in.session_id)
    except RedisError as exc:
        raise _session_store_down(exc) from None


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def keep(request: Request, response: Response, signed_in: Viewer) -> None:
    """Set the session cookie on `response`."""
    value = _serializer(request, "session").dumps(
        {
            "o": signed_in.org_id,
            "k": signed_in.key_id,
            "c": signed_in.csrf,
            "s": signed_in.session_id,
        }
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
