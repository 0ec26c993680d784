"""`GET|PATCH /api/settings`: an org's data settings, validated, stored per org, in OpenAPI."""

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.testclient import TestClient

from callwatch.db import transaction
from callwatch.orgs import data_settings
from callwatch.orgs.data_settings import DataSettingsPatch
from callwatch.runtime import Runtime
from tests.factories import tenant

DEFAULTS = {
    "retention_days": None,
    "raw_event_retention_days": 30,
    "archive_recordings": True,
    "redact_pii": False,
}


def test_an_org_that_set_nothing_has_the_defaults(client: TestClient) -> None:
    owner = tenant(client, "acme")
    response = client.get("/api/settings", headers=owner.headers)
    assert (response.status_code, response.json()) == (200, DEFAULTS)


def test_a_patch_changes_what_it_names_and_keeps_the_rest(client: TestClient) -> None:
    owner = tenant(client, "acme")
    first = client.patch(
        "/api/settings", json={"retention_days": 90, "redact_pii": True}, headers=owner.headers
    )
    second = client.patch(
        "/api/settings",
        json={"raw_event_retention_days": None, "archive_recordings": False},
        headers=owner.headers,
    )
    expected = {
        "retention_days": 90,
        "raw_event_retention_days": None,  # null: kept
        "archive_recordings": False,
        "redact_pii": True,
    }
    assert (first.status_code, first.json()) == (
        200,
        DEFAULTS | {"retention_days": 90, "redact_pii": True},
    )
    assert (second.status_code, second.json()) == (200, expected)
    assert client.get("/api/settings", headers=owner.headers).json() == expected
    back = client.patch("/api/settings", json={"retention_days": None}, headers=owner.headers)
    assert back.json() == expected | {"retention_days": None}


def test_settings_are_the_orgs_own(client: TestClient) -> None:
    acme, globex = tenant(client, "acme"), tenant(client, "globex")
    client.patch("/api/settings", json={"archive_recordings": False}, headers=acme.headers)
    assert client.get("/api/settings", headers=globex.headers).json() == DEFAULTS
    assert client.get("/api/settings").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": 36_501}, "retention_days"),
        ({"retention_days": "30"}, "retention_days"),
        ({"retention_days": 1.5}, "retention_days"),
        ({"raw_event_retention_days": -1}, "raw_event_retention_days"),
        ({"archive_recordings": "yes"}, "archive_recordings"),
        ({"archive_recordings": None}, "archive_recordings"),
        ({"redact_pii": 1}, "redact_pii"),
        ({"keep_forever": True}, "keep_forever"),
    ],
)
def test_a_bad_value_is_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    owner = tenant(client, "acme")
    response = client.patch("/api/settings", json=body, headers=owner.headers)
    assert (response.status_code, response.headers["content-type"], response.json()["field"]) == (
        422,
        "application/problem+json",
        field,
    )
    assert client.get("/api/settings", headers=owner.headers).json() == DEFAULTS


def test_a_body_that_is_not_an_object_is_4xx(client: TestClient) -> None:
    owner = tenant(client, "acme")
    for content in (b"[]", b"{", b"null"):
        response = client.patch(
            "/api/settings",
            content=content,
            headers=owner.headers | {"content-type": "application/json"},
        )
        assert response.status_code in (400, 422), content


def test_the_openapi_document_has_both_operations(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert sorted(paths["/api/settings"]) == ["get", "patch"]
    schema = paths["/api/settings"]["patch"]["requestBody"]["content"]["application/json"]
    assert schema["schema"] == {"$ref": "#/components/schemas/DataSettingsPatch"}


def test_two_first_patches_at_once_both_land(client: TestClient, runtime: Runtime) -> None:
    owner = tenant(client, "acme")
    changes = [DataSettingsPatch(retention_days=7), DataSettingsPatch(redact_pii=True)]
    ready = threading.Barrier(len(changes))

    def apply(change: DataSettingsPatch) -> None:
        ready.wait()
        with transaction(runtime.sessions) as session:
            data_settings.patch(session, owner.org_id, change, runtime.clock())

    with ThreadPoolExecutor(len(changes)) as pool:
        list(pool.map(apply, changes))

    response = client.get("/api/settings", headers=owner.headers)
    assert response.json() == DEFAULTS | {"retention_days": 7, "redact_pii": True}
