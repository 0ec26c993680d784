"""Sources after their creation: get, change, delete, rotate the token and the secret."""

import json
import time
from datetime import datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from callwatch.app import create_app
from callwatch.crypto import Vault
from callwatch.db import transaction
from callwatch.orgs import tenancy
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.tables import Source
from tests.conftest import create_org, create_source, path_of, signed
from tests.factories import add_call, tenant, wait_for_call


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def event(call_id: str = "p-1") -> bytes:
    body = {
        "type": "call.status_changed",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {"call_id": call_id, "status": "ringing"},
    }
    return json.dumps(body).encode()


def send(client: TestClient, webhook_url: str, secret: str, call_id: str = "p-1") -> int:
    raw = event(call_id)
    response = client.post(path_of(webhook_url), content=raw, headers=signed(secret, raw))
    return response.status_code


def stored_credentials(runtime: Runtime, source_id: str) -> dict[str, str]:
    with transaction(runtime.sessions) as session:
        source = session.get(Source, source_id)
        assert source is not None
        return tenancy.config_of(source, runtime.vault).credentials


def test_get_shows_the_source_without_its_credentials(client: TestClient) -> None:
    key = create_org(client)
    created = create_source(client, key, credentials={"api_key": "the-api-key"})

    got = client.get(f"/api/sources/{created['id']}", headers=auth(key))

    assert got.status_code == 200
    assert got.json() == {k: v for k, v in created.items() if k != "webhook_secret"}
    assert "the-api-key" not in got.text
    assert created["webhook_secret"] not in got.text


def test_another_orgs_source_is_a_404_for_every_operation(client: TestClient) -> None:
    mine = create_source(client, create_org(client, "acme"))
    theirs = create_org(client, "globex")
    one = f"/api/sources/{mine['id']}"

    answers = [
        client.get(one, headers=auth(theirs)).status_code,
        client.patch(one, json={"name": "x"}, headers=auth(theirs)).status_code,
        client.delete(one, headers=auth(theirs)).status_code,
        client.post(one + "/rotate-token", headers=auth(theirs)).status_code,
        client.post(one + "/rotate-secret", headers=auth(theirs)).status_code,
        client.get("/api/sources/src_nope", headers=auth(theirs)).status_code,
    ]

    assert answers == [404] * 6
    assert send(client, mine["webhook_url"], mine["webhook_secret"]) == 202


def test_patch_changes_the_fields_given_and_merges_settings_and_credentials(
    client: TestClient, runtime: Runtime
) -> None:
    key = create_org(client)
    created = create_source(
        client,
        key,
        settings={"detail_url": "http://127.0.0.1:9/calls/{call_id}", "allowed_ips": ["10.0.0.1"]},
        credentials={"api_key": "old", "extra": "kept"},
    )

    patched = client.patch(
        f"/api/sources/{created['id']}",
        json={
            "name": "renamed",
            "settings": {"api_base_url": "http://127.0.0.1:9/api"},
            "credentials": {"api_key": "the-new-key", "extra": None},
            "allowed_ips": ["10.0.0.0/8"],
        },
        headers=auth(key),
    )

    assert patched.status_code == 200, patched.text
    view = patched.json()
    assert (view["name"], view["settings"], view["enabled"]) == (
        "renamed",
        {
            "detail_url": "http://127.0.0.1:9/calls/{call_id}",
            "api_base_url": "http://127.0.0.1:9/api",
            "allowed_ips": ["10.0.0.0/8"],
            "rate_limit": None,
        },
        True,
    )
    assert "webhook_secret" not in view
    assert "the-new-key" not in patched.text
    assert stored_credentials(runtime, created["id"]) == {
        "api_key": "the-new-key",
        "webhook_secret": created["webhook_secret"],
    }
    assert client.get(f"/api/sources/{created['id']}", headers=auth(key)).json() == view


def test_patch_validates_as_at_creation_naming_the_field(client: TestClient) -> None:
    key = create_org(client)
    generic = create_source(client, key)
    atoms = create_source(
        client, key, name="atoms", provider="atoms", credentials={"webhook_secret": "s"}
    )
    create_source(client, key, name="taken")

    def problem(source: dict[str, Any], body: Any) -> tuple[int, str | None]:
        response = client.patch(f"/api/sources/{source['id']}", json=body, headers=auth(key))
        return response.status_code, response.json().get("field")

    assert [
        problem(generic, {"settings": {"allowed_ips": ["not-an-ip"]}}),
        problem(generic, {"allowed_ips": ["300.1.1.1"]}),
        problem(generic, {"settings": {"detail_url": "http://{call_id}.example/x"}}),
        problem(generic, {"settings": {"api_base_url": "not a url"}}),
        problem(generic, {"name": ""}),
        problem(generic, {"name": None}),
        problem(generic, {"enabled": "maybe"}),
        problem(generic, {"provider": "vapi"}),
        problem(generic, {"name": "taken"}),
        problem(atoms, {"credentials": {"webhook_secret": None}}),
    ] == [
        (422, "settings.allowed_ips.0"),
        (422, "settings.allowed_ips.0"),
        (422, "settings.detail_url"),
        (422, "settings.api_base_url"),
        (422, "name"),
        (422, "name"),
        (422, "enabled"),
        (422, "provider"),
        (409, "name"),
        (422, "credentials.webhook_secret"),
    ]


def test_patch_refuses_a_private_detail_url_when_the_guard_is_on(settings: Settings) -> None:
    guarded_settings = settings.model_copy(update={"allow_private_targets": False})
    with TestClient(create_app(guarded_settings), raise_server_exceptions=False) as guarded:
        key = create_org(guarded, "guarded")
        source = create_source(guarded, key)
        response = guarded.patch(
            f"/api/sources/{source['id']}",
            json={"settings": {"detail_url": "http://169.254.169.254/{call_id}"}},
            headers=auth(key),
        )

    assert (response.status_code, response.json()["field"]) == (422, "settings.detail_url")


def test_a_disabled_source_answers_410_and_again_202_once_enabled(client: TestClient) -> None:
    key = create_org(client)
    source = create_source(client, key)
    one = f"/api/sources/{source['id']}"

    disabled = client.patch(one, json={"enabled": False}, headers=auth(key)).json()["enabled"]
    while_disabled = send(client, source["webhook_url"], source["webhook_secret"])
    client.patch(one, json={"enabled": True}, headers=auth(key))
    enabled_again = send(client, source["webhook_url"], source["webhook_secret"])

    assert (disabled, while_disabled, enabled_again) == (False, 410, 202)


def test_events_accepted_before_a_source_was_disabled_are_still_applied(
    client: TestClient, request: pytest.FixtureRequest
) -> None:
    key = create_org(client)
    source = create_source(client, key)
    accepted = send(client, source["webhook_url"], source["webhook_secret"], "before-disable")
    client.patch(f"/api/sources/{source['id']}", json={"enabled": False}, headers=auth(key))

    request.getfixturevalue("worker")  # the worker starts only now, the source disabled
    record = wait_for_call(client, key, "before-disable", lambda call: call["status"] == "ringing")

    assert (accepted, record["source"]) == (202, "gen")


def test_a_deleted_source_is_gone_but_its_calls_stay(client: TestClient, runtime: Runtime) -> None:
    acme = tenant(client, "acme", source="main")
    webhook_url = client.get(f"/api/sources/{acme.source_id}", headers=acme.headers).json()[
        "webhook_url"
    ]
    add_call(runtime, acme, "c1")

    deleted = client.delete(f"/api/sources/{acme.source_id}", headers=acme.headers)

    assert deleted.status_code == 204
    assert client.get(f"/api/sources/{acme.source_id}", headers=acme.headers).status_code == 404
    assert client.get("/api/sources", headers=acme.headers).json() == {"items": []}
    assert send(client, webhook_url, "a token is looked up before any signature") == 404
    # The record keeps the name it was assembled with; the live name is freed for a new source.
    call = client.get("/api/calls/c1", headers=acme.headers)
    assert (call.status_code, call.json()["source"]) == (200, "main")
    by_source = client.get("/api/stats", params={"group_by": "source"}, headers=acme.headers)
    assert [group["key"] for group in by_source.json()["groups"]] == [
        f"main (deleted {acme.source_id})"
    ]
    assert client.delete(f"/api/sources/{acme.source_id}", headers=acme.headers).status_code == 404


def test_the_name_of_a_deleted_source_can_be_used_again(client: TestClient) -> None:
    key = create_org(client)
    first = create_source(client, key, name="main")
    client.delete(f"/api/sources/{first['id']}", headers=auth(key))

    second = create_source(client, key, name="main")

    assert (second["name"], second["id"] != first["id"]) == ("main", True)


def test_rotate_token_keeps_the_old_url_for_the_overlap(client: TestClient) -> None:
    key = create_org(client)
    source = create_source(client, key)
    old_url, secret = source["webhook_url"], source["webhook_secret"]

    rotated = client.post(
        f"/api/sources/{source['id']}/rotate-token", json={"overlap_s": 1.0}, headers=auth(key)
    )

    assert rotated.status_code == 200, rotated.text
    new_url = rotated.json()["webhook_url"]
    assert new_url != old_url
    assert rotated.json()["previous_token_expires_at"] is not None
    assert (send(client, old_url, secret, "a"), send(client, new_url, secret, "b")) == (202, 202)
    time.sleep(1.1)
    assert (send(client, old_url, secret, "c"), send(client, new_url, secret, "d")) == (404, 202)


def test_rotate_token_with_no_overlap_and_by_default(client: TestClient) -> None:
    key = create_org(client)
    source = create_source(client, key)
    one = f"/api/sources/{source['id']}"

    default = client.post(one + "/rotate-token", headers=auth(key)).json()
    at_once = client.post(one + "/rotate-token", json={"overlap_s": 0}, headers=auth(key)).json()

    expires = datetime.fromisoformat(default["previous_token_expires_at"])
    assert (expires - datetime.fromisoformat(default["created_at"])).total_seconds() > 86390
    assert at_once["previous_token_expires_at"] is None
    secret = source["webhook_secret"]
    assert [
        send(client, url, secret) for url in (source["webhook_url"], default["webhook_url"])
    ] == [
        404,
        404,
    ]
    assert send(client, at_once["webhook_url"], secret) == 202


def test_rotate_secret_verifies_both_secrets_during_the_overlap(client: TestClient) -> None:
    key = create_org(client)
    source = create_source(client, key)
    url, old = source["webhook_url"], source["webhook_secret"]

    rotated = client.post(
        f"/api/sources/{source['id']}/rotate-secret", json={"overlap_s": 1.0}, headers=auth(key)
    )

    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["webhook_secret"]
    assert new.startswith("whsec_")
    assert new != old
    assert rotated.json()["previous_secret_expires_at"] is not None
    assert (send(client, url, old, "a"), send(client, url, new, "b")) == (202, 202)
    time.sleep(1.1)
    assert (send(client, url, old, "c"), send(client, url, new, "d")) == (401, 202)
    assert new not in client.get(f"/api/sources/{source['id']}", headers=auth(key)).text


def test_rotate_secret_with_no_overlap_stops_the_old_secret_at_once(client: TestClient) -> None:
    key = create_org(client)
    source = create_source(client, key)

    rotated = client.post(
        f"/api/sources/{source['id']}/rotate-secret", json={"overlap_s": 0}, headers=auth(key)
    ).json()

    assert rotated["previous_secret_expires_at"] is None
    url = source["webhook_url"]
    assert (
        send(client, url, source["webhook_secret"]),
        send(client, url, rotated["webhook_secret"]),
    ) == (
        401,
        202,
    )


@pytest.mark.parametrize(
    ("provider", "credentials"),
    [("atoms", {"signing_secret": "s"}), ("vapi", {"secret": "s"}), ("retell", {"api_key": "k"})],
)
def test_rotate_secret_is_refused_for_a_secret_the_platform_issues(
    client: TestClient, provider: str, credentials: dict[str, str]
) -> None:
    key = create_org(client)
    source = create_source(client, key, name=provider, provider=provider, credentials=credentials)

    refused = client.post(f"/api/sources/{source['id']}/rotate-secret", headers=auth(key))

    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        f"{provider} issues this source's secret itself: rotate it on the platform, then PATCH "
        "the source's credentials.webhook_secret"
    )


def test_rotation_overlaps_out_of_range_are_422_naming_overlap_s(client: TestClient) -> None:
    key = create_org(client)
    one = f"/api/sources/{create_source(client, key)['id']}"

    answers = [
        client.post(one + action, json=body, headers=auth(key))
        for action in ("/rotate-token", "/rotate-secret")
        for body in ({"overlap_s": -1}, {"overlap_s": 1e12}, {"overlap_s": "soon"})
    ]

    assert [(a.status_code, a.json()["field"]) for a in answers] == [(422, "overlap_s")] * 6


def test_the_old_secret_names_are_accepted_and_stored_as_webhook_secret(
    client: TestClient, runtime: Runtime
) -> None:
    key = create_org(client)
    atoms = create_source(
        client, key, name="a", provider="atoms", credentials={"signing_secret": "s1"}
    )
    vapi = create_source(client, key, name="v", provider="vapi", credentials={"secret": "s2"})
    client.patch(
        f"/api/sources/{vapi['id']}", json={"credentials": {"secret": "s3"}}, headers=auth(key)
    )

    assert stored_credentials(runtime, atoms["id"]) == {"webhook_secret": "s1"}
    assert stored_credentials(runtime, vapi["id"]) == {"webhook_secret": "s3"}


def test_a_source_stored_under_an_old_secret_name_reads_as_webhook_secret(
    client: TestClient, runtime: Runtime
) -> None:
    key = create_org(client)
    source = create_source(
        client, key, name="a", provider="atoms", credentials={"webhook_secret": "x"}
    )
    with transaction(runtime.sessions) as session:  # as sources created before the one name
        stored = session.get(Source, source["id"])
        assert stored is not None
        stored.credentials = Vault("test-secret-key").seal({"signing_secret": "old"})

    assert stored_credentials(runtime, source["id"]) == {"webhook_secret": "old"}


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"null",
        b'{"name": "\\u0000"}',
        b'{"settings": []}',
        b'{"settings": {"allowed_ips": "1.2.3.4"}}',
        b'{"credentials": {"k": 1}}',
        b'{"credentials": []}',
        b'{"unknown": 1}',
        b'{"allowed_ips": [null]}',
        b"\xff\xfe",
        b'{"name": "' + b"x" * 300 + b'"}',
    ],
)
def test_hostile_patches_are_4xx(client: TestClient, body: bytes) -> None:
    key = create_org(client)
    source = create_source(client, key)

    response = client.patch(
        f"/api/sources/{source['id']}",
        content=body,
        headers=auth(key) | {"content-type": "application/json"},
    )

    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/rotate-token", b"[]"),
        ("/rotate-token", b"null"),
        ("/rotate-token", b'{"overlap_s": NaN}'),
        ("/rotate-token", b'{"overlap_s": 1e999}'),
        ("/rotate-secret", b'{"overlap_s": 1, "extra": 2}'),
        ("/rotate-secret", b"{"),
        ("/rotate-secret", b"\x00"),
    ],
)
def test_hostile_rotations_are_4xx_and_change_nothing(
    client: TestClient, path: str, body: bytes
) -> None:
    key = create_org(client)
    source = create_source(client, key)

    response = client.post(
        f"/api/sources/{source['id']}{path}",
        content=body,
        headers=auth(key) | {"content-type": "application/json"},
    )

    assert 400 <= response.status_code < 500, response.text
    assert client.get(f"/api/sources/{source['id']}", headers=auth(key)).json() == {
        k: v for k, v in source.items() if k != "webhook_secret"
    }


@pytest.mark.parametrize("source_id", ["%00", "x" * 5000, "src_%F0%9F%92%A9", "..", "%2e%2e"])
def test_hostile_source_ids_are_404(client: TestClient, source_id: str) -> None:
    key = create_org(client)

    answers = {
        client.get(f"/api/sources/{source_id}", headers=auth(key)).status_code,
        client.patch(
            f"/api/sources/{source_id}", json={"enabled": False}, headers=auth(key)
        ).status_code,
        client.delete(f"/api/sources/{source_id}", headers=auth(key)).status_code,
        client.post(f"/api/sources/{source_id}/rotate-token", headers=auth(key)).status_code,
    }

    assert answers == {404}


def test_removing_a_generated_secret_generates_a_new_one_shown_once(
    client: TestClient, runtime: Runtime
) -> None:
    key = create_org(client)
    source = create_source(client, key)

    patched = client.patch(
        f"/api/sources/{source['id']}",
        json={"credentials": {"webhook_secret": None}},
        headers=auth(key),
    ).json()

    new = patched["webhook_secret"]
    assert new.startswith("whsec_")
    assert new != source["webhook_secret"]
    assert stored_credentials(runtime, source["id"]) == {"webhook_secret": new}
    url = source["webhook_url"]
    assert (send(client, url, source["webhook_secret"], "a"), send(client, url, new, "b")) == (
        401,
        202,
    )
