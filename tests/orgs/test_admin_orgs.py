"""`GET /api/admin/orgs`: every org with how many sources and keys it has (admin token only)."""

from starlette.testclient import TestClient

from tests.conftest import ADMIN
from tests.factories import add_source, tenant

ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN}"}


def test_orgs_are_listed_oldest_first_with_their_counts(client: TestClient) -> None:
    acme = tenant(client, "acme")
    add_source(client, acme, "backup")
    client.post("/api/keys", json={"name": "grafana"}, headers=acme.headers)
    globex = tenant(client, "globex")
    empty = client.post("/api/admin/orgs", json={"name": "empty"}, headers=ADMIN_HEADERS).json()

    listed = client.get("/api/admin/orgs", headers=ADMIN_HEADERS)

    assert listed.status_code == 200
    items = listed.json()["items"]
    created = [item.pop("created_at") for item in items]
    assert items == [
        {"id": acme.org_id, "name": "acme", "sources": 2, "keys": 2},
        {"id": globex.org_id, "name": "globex", "sources": 1, "keys": 1},
        {"id": empty["id"], "name": "empty", "sources": 0, "keys": 1},
    ]
    assert created == sorted(created)


def test_no_orgs_is_an_empty_list(client: TestClient) -> None:
    listed = client.get("/api/admin/orgs", headers=ADMIN_HEADERS)

    assert (listed.status_code, listed.json()) == (200, {"items": []})


def test_only_the_admin_token_lists_orgs(client: TestClient) -> None:
    acme = tenant(client, "acme")

    results = [
        client.get("/api/admin/orgs", headers=acme.headers),
        client.get("/api/admin/orgs", headers={"authorization": "Bearer adm_wrong"}),
        client.get("/api/admin/orgs"),
    ]

    assert [(r.status_code, r.json()["title"]) for r in results] == [(401, "Unauthorized")] * 3
    assert acme.key not in results[0].text
