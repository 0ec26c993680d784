"""`/sources`: the org's sources with their webhook URLs; adding one from the form; rotating,
disabling, enabling and deleting one from the page, as the API does, and only the org's own."""

import re
from typing import Any

from starlette.testclient import TestClient

from tests.conftest import path_of, signed
from tests.dashboard.signing_in import sign_in
from tests.factories import Tenant, tenant


def test_sources_list_their_webhook_urls(client: TestClient) -> None:
    acme, globex = tenant(client, "acme", source="main"), tenant(client, "globex", source="theirs")
    sign_in(client, acme.key)
    (source,) = client.get("/api/sources", headers=acme.headers).json()["items"]

    page = client.get("/sources").text

    assert f'data-copy="{source["webhook_url"]}"' in page
    assert ">theirs<" not in page
    assert globex.source_id not in page


def test_a_source_added_from_the_form_shows_its_secret_once(client: TestClient) -> None:
    acme = tenant(client, "acme")
    csrf = sign_in(client, acme.key)

    added = client.post(
        "/sources", data={"csrf_token": csrf, "name": "gen2", "provider": "generic"}
    )
    again = client.post(
        "/sources", data={"csrf_token": csrf, "name": "gen2", "provider": "generic"}
    )
    unknown = client.post("/sources", data={"csrf_token": csrf, "name": "x", "provider": "nope"})

    assert added.status_code == 201
    secret = re.search(r'<code id="new-secret">(whsec_[^<]+)</code>', added.text)
    assert secret is not None
    assert secret.group(1) not in client.get("/sources").text
    assert (again.status_code, unknown.status_code) == (409, 422)
    assert "a source named &#39;gen2&#39; already exists" in again.text
    assert "unknown provider &#39;nope&#39;" in unknown.text
    names = [
        item["name"] for item in client.get("/api/sources", headers=acme.headers).json()["items"]
    ]
    assert sorted(names) == ["gen2", "main"]


def _source(client: TestClient, owner: Tenant) -> dict[str, Any]:
    found: dict[str, Any] = client.get(
        f"/api/sources/{owner.source_id}", headers=owner.headers
    ).json()
    return found


def test_rotating_the_token_from_the_page_moves_the_webhook_url(client: TestClient) -> None:
    acme = tenant(client, "acme")
    csrf = sign_in(client, acme.key)
    before = _source(client, acme)

    response = client.post(f"/sources/{acme.source_id}/rotate-token", data={"csrf_token": csrf})
    after = _source(client, acme)

    assert response.status_code == 200
    assert after["webhook_url"] != before["webhook_url"]
    assert f'<code id="rotated-url">{after["webhook_url"]}</code>' in response.text
    assert after["previous_token_expires_at"] is not None
    assert client.post(path_of(before["webhook_url"]), content=b"{}").status_code == 401
    assert client.post(path_of(after["webhook_url"]), content=b"{}").status_code == 401


def test_rotating_the_secret_from_the_page_shows_the_new_one_once(client: TestClient) -> None:
    acme = tenant(client, "acme")
    csrf = sign_in(client, acme.key)

    response = client.post(f"/sources/{acme.source_id}/rotate-secret", data={"csrf_token": csrf})
    secret = re.search(r'<code id="new-secret">(whsec_[^<]+)</code>', response.text)
    assert secret is not None
    body = (
        b'{"type": "call.status_changed", "timestamp": "2026-11-20T10:00:00Z",'
        b' "data": {"call_id": "c1", "status": "ringing"}}'
    )
    webhook = path_of(_source(client, acme)["webhook_url"])

    signed_new = client.post(webhook, content=body, headers=signed(secret.group(1), body))

    assert response.status_code == 200
    assert signed_new.status_code == 202
    assert secret.group(1) not in client.get("/sources").text


def test_disabling_and_enabling_from_the_page(client: TestClient) -> None:
    acme = tenant(client, "acme")
    csrf = sign_in(client, acme.key)
    webhook = path_of(_source(client, acme)["webhook_url"])

    disabled = client.post(
        f"/sources/{acme.source_id}/enabled",
        data={"csrf_token": csrf, "enabled": "false"},
        follow_redirects=False,
    )
    gone = client.post(webhook, content=b"{}")
    state_off = _source(client, acme)["enabled"]
    client.post(f"/sources/{acme.source_id}/enabled", data={"csrf_token": csrf, "enabled": "true"})

    assert (disabled.status_code, disabled.headers["location"]) == (303, "/sources")
    assert (gone.status_code, state_off) == (410, False)
    assert _source(client, acme)["enabled"] is True


def test_deleting_asks_first_then_deletes(client: TestClient) -> None:
    acme = tenant(client, "acme")
    csrf = sign_in(client, acme.key)
    webhook = path_of(_source(client, acme)["webhook_url"])

    confirm = client.get(f"/sources/{acme.source_id}/delete")
    still_there = client.get(f"/api/sources/{acme.source_id}", headers=acme.headers).status_code
    deleted = client.post(
        f"/sources/{acme.source_id}/delete", data={"csrf_token": csrf}, follow_redirects=False
    )

    assert confirm.status_code == 200
    assert f'action="/sources/{acme.source_id}/delete"' in confirm.text
    assert still_there == 200
    assert (deleted.status_code, deleted.headers["location"]) == (303, "/sources")
    assert client.get(f"/api/sources/{acme.source_id}", headers=acme.headers).status_code == 404
    assert client.post(webhook, content=b"{}").status_code == 404


def test_another_orgs_source_cannot_be_changed_and_forms_need_the_token(
    client: TestClient,
) -> None:
    acme, globex = tenant(client, "acme"), tenant(client, "globex")
    csrf = sign_in(client, acme.key)
    theirs = globex.source_id

    answers = [
        client.post(f"/sources/{theirs}/{action}", data={"csrf_token": csrf}).status_code
        for action in ("rotate-token", "rotate-secret", "enabled", "delete")
    ]
    confirm = client.get(f"/sources/{theirs}/delete").status_code
    forged = client.post(f"/sources/{acme.source_id}/delete", data={"csrf_token": "x"})

    assert (answers, confirm, forged.status_code) == ([404, 404, 404, 404], 404, 403)
    assert _source(client, globex)["enabled"] is True
    assert _source(client, acme)["enabled"] is True
