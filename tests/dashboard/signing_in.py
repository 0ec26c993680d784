"""Signing a test client in to the dashboard, as a browser does: the form, its token, the key."""

import re

from starlette.testclient import TestClient

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_token(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html
    return found.group(1)


def sign_in(client: TestClient, api_key: str) -> str:
    """Sign `client` in with `api_key`; the session's CSRF token."""
    token = form_token(client.get("/login").text)
    response = client.post(
        "/login", data={"api_key": api_key, "csrf_token": token}, follow_redirects=False
    )
    assert (response.status_code, response.headers["location"]) == (303, "/"), response.text
    return form_token(client.get("/calls").text)


def call_ids(html: str) -> list[str]:
    """The calls a call log's rows link to, in order."""
    return re.findall(r'<td><a href="/calls/([^"/?]+)">', html)
