"""Signing in and out, the session cookie, CSRF, and the headers every page carries."""

import time

from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from starlette.testclient import TestClient

from callwatch.runtime import Runtime
from callwatch.web.sessions import SESSION_COOKIE
from tests.dashboard.signing_in import form_token, sign_in
from tests.factories import add_call, tenant

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def _replace_session(client: TestClient, value: str) -> None:
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, value)


def test_pages_without_a_session_redirect_to_login(client: TestClient) -> None:
    for path in ("/", "/calls", "/calls/call_1", "/calls/export", "/calls/call_1/json"):
        response = client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/login")


def test_htmx_polling_without_a_session_is_sent_to_login(client: TestClient) -> None:
    response = client.get("/calls/rows", headers={"hx-request": "true"}, follow_redirects=False)
    assert (response.status_code, response.headers["hx-redirect"]) == (204, "/login")


def test_sign_in_and_out(client: TestClient) -> None:
    acme = tenant(client, "acme")
    csrf = sign_in(client, acme.key)

    overview = client.get("/", follow_redirects=False)
    signed_out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    after = client.get("/", follow_redirects=False)

    assert overview.status_code == 200
    assert "<h1>Overview</h1>" in overview.text
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/login")
    assert (after.status_code, after.headers["location"]) == (303, "/login")


def test_a_cookie_copied_before_sign_out_is_refused_after_it(client: TestClient) -> None:
    acme = tenant(client, "acme")
    csrf = sign_in(client, acme.key)
    copied = client.cookies[SESSION_COOKIE]
    elsewhere = TestClient(client.app)
    elsewhere.cookies.set(SESSION_COOKIE, copied)
    before = elsewhere.get("/calls", follow_redirects=False)

    client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    after = elsewhere.get("/calls", follow_redirects=False)
    recording = elsewhere.get("/api/calls/call_1/recording", follow_redirects=False)

    assert before.status_code == 200
    assert (after.status_code, after.headers["location"]) == (303, "/login")
    assert recording.status_code == 401


def test_signing_out_ends_only_that_session(client: TestClient) -> None:
    acme = tenant(client, "acme")
    other = TestClient(client.app)
    sign_in(other, acme.key)
    csrf = sign_in(client, acme.key)

    client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)

    assert other.get("/calls", follow_redirects=False).status_code == 200


def test_a_wrong_key_is_refused_on_the_form(client: TestClient) -> None:
    token = form_token(client.get("/login").text)
    response = client.post("/login", data={"api_key": "cw_nope", "csrf_token": token})
    assert response.status_code == 401
    assert "that API key is not valid" in response.text
    assert SESSION_COOKIE not in client.cookies


def test_the_session_cookie_is_signed_httponly_lax_and_names_no_key(client: TestClient) -> None:
    acme = tenant(client, "acme")
    token = form_token(client.get("/login").text)
    response = client.post(
        "/login", data={"api_key": acme.key, "csrf_token": token}, follow_redirects=False
    )
    cookie = response.headers["set-cookie"].split(", callwatch_login")[0]
    value, *flags = cookie.split("; ")
    assert sorted(flags) == ["HttpOnly", "Max-Age=43200", "Path=/", "SameSite=lax"]
    assert acme.key not in value


def test_the_cookie_is_secure_under_https(client: TestClient) -> None:
    acme = tenant(client, "acme")
    secure = TestClient(client.app, base_url="https://testserver")
    token = form_token(secure.get("/login").text)
    response = secure.post(
        "/login", data={"api_key": acme.key, "csrf_token": token}, follow_redirects=False
    )
    assert "; Secure" in response.headers["set-cookie"]


def test_forms_without_the_sessions_csrf_token_are_refused(
    client: TestClient, runtime: Runtime
) -> None:
    acme = tenant(client, "acme")
    add_call(runtime, acme, "call_1")
    csrf = sign_in(client, acme.key)

    missing = client.post("/calls/call_1/replay", follow_redirects=False)
    wrong = client.post("/calls/call_1/replay", data={"csrf_token": csrf + "x"})
    no_logout = client.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False)

    assert (missing.status_code, wrong.status_code, no_logout.status_code) == (403, 403, 403)
    assert client.get("/", follow_redirects=False).status_code == 200  # still signed in


def test_the_sign_in_form_needs_its_token(client: TestClient) -> None:
    acme = tenant(client, "acme")
    client.get("/login")
    response = client.post("/login", data={"api_key": acme.key}, follow_redirects=False)
    assert response.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_every_page_carries_the_content_security_policy(
    client: TestClient, runtime: Runtime
) -> None:
    acme = tenant(client, "acme")
    add_call(runtime, acme, "call_1")
    login = client.get("/login")
    sign_in(client, acme.key)
    for response in (login, client.get("/"), client.get("/calls")):
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-frame-options"] == "DENY"
    # A recording not archived yet plays from its platform: that one origin, on that page only.
    call_page = client.get("/calls/call_1")
    assert call_page.headers["content-security-policy"] == CSP.replace(
        "media-src 'self';", "media-src 'self' https://rec.example;"
    )


def test_an_expired_session_is_sent_to_login(client: TestClient) -> None:
    acme = tenant(client, "acme")
    sign_in(client, acme.key)
    payload = URLSafeTimedSerializer("test-secret-key", salt="session").loads(
        client.cookies[SESSION_COOKIE]
    )

    class TwelveHoursAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 12 * 3600 - 1

    stale = URLSafeTimedSerializer("test-secret-key", salt="session", signer=TwelveHoursAgo)
    _replace_session(client, stale.dumps(payload))

    response = client.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")


def test_a_forged_cookie_is_sent_to_login(client: TestClient) -> None:
    acme = tenant(client, "acme")
    sign_in(client, acme.key)
    payload = URLSafeTimedSerializer("test-secret-key", salt="session").loads(
        client.cookies[SESSION_COOKIE]
    )
    forged = URLSafeTimedSerializer("another-key", salt="session").dumps(payload)
    _replace_session(client, forged)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_revoked_keys_sessions_end(client: TestClient) -> None:
    acme = tenant(client, "acme")
    spare = client.post("/api/keys", json={"name": "browser"}, headers=acme.headers).json()
    sign_in(client, spare["api_key"])
    assert client.get("/", follow_redirects=False).status_code == 200

    revoked = client.delete(f"/api/keys/{spare['id']}", headers=acme.headers)
    response = client.get("/calls", follow_redirects=False)

    assert revoked.status_code == 204
    assert (response.status_code, response.headers["location"]) == (303, "/login")
