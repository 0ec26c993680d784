"""Tenancy and the read API: admin token, org keys, sources, and no reading across orgs."""

import json
from typing import Any

from starlette.testclient import TestClient

from callwatch.simulator import events_for
from tests.conftest import ADMIN, create_org, create_source, path_of, signed
from tests.pipeline.test_steps import hand_call


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_admin_endpoints_need_the_admin_token(client: TestClient) -> None:
    missing = client.post("/api/admin/orgs", json={"name": "x"})
    wrong = client.post("/api/admin/orgs", json={"name": "x"}, headers=auth("nope"))
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.headers["content-type"] == "application/problem+json"


def test_org_create_shows_the_key_once_and_rejects_duplicates(client: TestClient) -> None:
    created = client.post("/api/admin/orgs", json={"name": "acme"}, headers=auth(ADMIN))
    again = client.post("/api/admin/orgs", json={"name": "acme"}, headers=auth(ADMIN))
    empty = client.post("/api/admin/orgs", json={"name": ""}, headers=auth(ADMIN))
    body = created.json()
    assert created.status_code == 201
    assert sorted(body) == ["api_key", "id", "name"]
    assert body["api_key"].startswith("cw_")
    assert body["id"].startswith("org_")
    assert (again.status_code, again.json()["field"]) == (409, "name")
    assert (empty.status_code, empty.json()["field"]) == (422, "name")


def test_sources_show_the_secret_once_and_never_credentials(client: TestClient) -> None:
    key = create_org(client)
    created = create_source(
        client, key, name="vapi-prod", credentials={"api_key": "provider-secret-123"}
    )
    listed = client.get("/api/sources", headers=auth(key)).json()["items"]
    assert created["webhook_secret"].startswith("whsec_")
    assert created["webhook_url"].startswith("http://testserver/webhooks/")
    assert len(created["webhook_url"].rsplit("/", 1)[1]) >= 22  # ≥ 128 random bits
    assert [item["name"] for item in listed] == ["vapi-prod"]
    text = json.dumps(listed)
    assert "provider-secret-123" not in text
    assert "whsec_" not in text


def test_unknown_provider_is_422_naming_it(client: TestClient) -> None:
    response = client.post(
        "/api/sources", json={"name": "x", "provider": "nope"}, headers=auth(create_org(client))
    )
    assert (response.status_code, response.json()["field"]) == (422, "provider")


def test_another_orgs_call_is_a_404(client: TestClient, worker: None) -> None:
    key_a, key_b = create_org(client, "a"), create_org(client, "b")
    source = create_source(client, key_a)
    call = hand_call("private-1")
    body = json.dumps(events_for(call, embed_detail=False)[0]).encode()
    response = client.post(
        path_of(source["webhook_url"]), content=body, headers=signed(source["webhook_secret"], body)
    )
    assert response.status_code == 202
    call_id = _wait_for_call(client, key_a, "private-1")
    for ident in (call_id, "private-1"):
        assert client.get(f"/api/calls/{ident}", headers=auth(key_b)).status_code == 404
        assert client.get(f"/api/calls/{ident}", headers=auth(key_a)).status_code == 200
    assert client.get("/api/calls", headers=auth(key_b)).json()["total"] == 0
    assert client.get("/api/sources", headers=auth(key_b)).json()["items"] == []


def _wait_for_call(client: TestClient, key: str, provider_call_id: str) -> str:
    import time

    for _ in range(100):
        response = client.get(f"/api/calls/{provider_call_id}", headers=auth(key))
        if response.status_code == 200:
            call_id: str = response.json()["id"]
            return call_id
        time.sleep(0.1)
    raise AssertionError("call never appeared")


def test_list_filters_and_pages(client: TestClient, worker: None) -> None:
    key = create_org(client)
    source = create_source(client, key)
    for n, status in enumerate(["ringing", "busy", "ringing"]):
        body: dict[str, Any] = {
            "type": "call.status_changed",
            "timestamp": f"2026-11-20T10:0{n}:00Z",
            "data": {"call_id": f"c{n}", "status": status, "agent_id": f"agent-{n % 2}"},
        }
        raw = json.dumps(body).encode()
        client.post(
            path_of(source["webhook_url"]),
            content=raw,
            headers=signed(source["webhook_secret"], raw),
        )
    for n in range(3):
        _wait_for_call(client, key, f"c{n}")

    def ids(query: str) -> tuple[list[str], int]:
        page = client.get(f"/api/calls?{query}", headers=auth(key)).json()
        return [item["provider_call_id"] for item in page["items"]], page["total"]

    assert ids("") == (["c2", "c1", "c0"], 3)
    assert ids("status=busy") == (["c1"], 1)
    assert ids("status=busy&status=ringing&limit=2") == (["c2", "c1"], 3)
    assert ids("skip=2") == (["c0"], 3)
    assert ids("assistant_id=agent-0") == (["c2", "c0"], 2)
    bad = client.get("/api/calls?limit=0", headers=auth(key))
    assert (bad.status_code, bad.json()["field"]) == (422, "limit")
    assert client.get("/api/calls?status=dancing", headers=auth(key)).json()["field"] == "status"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {
        "status": "ready",
        "checks": {"database": "ok", "intake": "ok", "redis": "ok"},
    }
