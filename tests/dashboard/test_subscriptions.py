"""`/subscriptions`: endpoints added from the form, their delivery log, "retry now", re-sending
since a time, secret rotation, and no reaching into another org's endpoints."""

import re
from typing import Any

from starlette.testclient import TestClient

from callwatch.runtime import Runtime
from tests.dashboard.signing_in import sign_in
from tests.downstream.test_deliveries import (
    Reply,
    emit,
    receiver,  # noqa: F401  (the fixture)
    settings,  # noqa: F401  (fast retries, loopback receivers)
    settled,
    subscribe,
)
from tests.factories import Tenant, tenant


def test_an_endpoint_added_from_the_form_shows_its_secret_once(client: TestClient) -> None:
    acme = tenant(client, "acme")
    csrf = sign_in(client, acme.key)

    added = client.post(
        "/subscriptions",
        data={
            "csrf_token": csrf,
            "url": "http://127.0.0.1:9/hook",
            "event_types": ["call.assembled", "alert.triggered"],
        },
    )
    refused = client.post(
        "/subscriptions", data={"csrf_token": csrf, "url": "ftp://x", "event_types": ["x"]}
    )

    assert added.status_code == 201
    secret = re.search(r'<code id="new-secret">(whsec_[^<]+)</code>', added.text)
    assert secret is not None
    assert secret.group(1) not in client.get("/subscriptions").text
    (item,) = client.get("/api/subscriptions", headers=acme.headers).json()["items"]
    assert (item["url"], item["event_types"]) == (
        "http://127.0.0.1:9/hook",
        ["call.assembled", "alert.triggered"],
    )
    assert refused.status_code == 422


def test_a_failed_delivery_is_retried_from_its_log(
    client: TestClient,
    runtime: Runtime,
    worker: None,
    receiver: Any,  # noqa: F811
) -> None:
    acme = tenant(client, "acme")
    subscription = subscribe(client, acme, receiver.script("hook", Reply(400), Reply(200)))
    [created] = emit(runtime, acme)
    settled(client, acme, subscription["id"])
    csrf = sign_in(client, acme.key)
    log = client.get(f"/subscriptions/{subscription['id']}").text
    assert '<td class="num">400</td>' in log

    retried = client.post(
        f"/subscriptions/{subscription['id']}/deliveries/{created}/retry",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    [item] = settled(client, acme, subscription["id"])

    assert retried.headers["location"] == f"/subscriptions/{subscription['id']}?queued=1"
    assert [(a["status_code"], a["outcome"]) for a in item["attempts"]] == [
        (400, "failed"),
        (200, "delivered"),
    ]
    assert '<td class="num">200</td>' in client.get(f"/subscriptions/{subscription['id']}").text


def test_secret_rotation_and_resending_since_a_time(client: TestClient) -> None:
    acme = tenant(client, "acme")
    subscription = subscribe(client, acme, "http://127.0.0.1:9/hook")
    csrf = sign_in(client, acme.key)

    rotated = client.post(f"/subscriptions/{subscription['id']}/rotate", data={"csrf_token": csrf})
    resent = client.post(
        f"/subscriptions/{subscription['id']}/resend",
        data={"csrf_token": csrf, "from": "2026-01-01T00:00"},
        follow_redirects=False,
    )
    bad = client.post(
        f"/subscriptions/{subscription['id']}/resend", data={"csrf_token": csrf, "from": "soon"}
    )

    new_secret = re.search(r'<code id="new-secret">(whsec_[^<]+)</code>', rotated.text)
    assert new_secret is not None
    assert new_secret.group(1) != subscription["secret"]
    after = client.get(f"/api/subscriptions/{subscription['id']}", headers=acme.headers).json()
    assert after["previous_secret_expires_at"] is not None
    assert resent.headers["location"] == f"/subscriptions/{subscription['id']}?queued=0"
    assert bad.status_code == 422


def test_another_orgs_endpoint_is_not_found(client: TestClient) -> None:
    acme, globex = tenant(client, "acme"), tenant(client, "globex")
    theirs = subscribe(client, globex, "http://127.0.0.1:9/theirs")
    csrf = sign_in(client, acme.key)

    log = client.get(f"/subscriptions/{theirs['id']}")
    rotated = client.post(f"/subscriptions/{theirs['id']}/rotate", data={"csrf_token": csrf})

    assert (log.status_code, rotated.status_code) == (404, 404)
    assert "theirs" not in client.get("/subscriptions").text
    unchanged = client.get(f"/api/subscriptions/{theirs['id']}", headers=globex.headers).json()
    assert unchanged["previous_secret_expires_at"] is None


def _api(client: TestClient, owner: Tenant, subscription_id: str) -> dict[str, Any]:
    response = client.get(f"/api/subscriptions/{subscription_id}", headers=owner.headers)
    found: dict[str, Any] = response.json() if response.status_code == 200 else {}
    return found


def test_an_endpoint_is_edited_from_its_page(client: TestClient) -> None:
    acme = tenant(client, "acme")
    subscription = subscribe(client, acme, "http://127.0.0.1:9/hook")
    csrf = sign_in(client, acme.key)
    edit = f"/subscriptions/{subscription['id']}/edit"

    saved = client.post(
        edit,
        data={
            "csrf_token": csrf,
            "url": "http://127.0.0.1:9/moved",
            "event_types": ["call.assembled", "alert.resolved"],
            "per_second": "2.5",
            "burst": "",
        },
        follow_redirects=False,
    )
    after = _api(client, acme, subscription["id"])
    no_events = client.post(edit, data={"csrf_token": csrf, "url": "http://127.0.0.1:9/x"})
    lifted = client.post(
        edit,
        data={"csrf_token": csrf, "url": after["url"], "event_types": after["event_types"]},
        follow_redirects=False,
    )

    assert (saved.status_code, saved.headers["location"]) == (
        303,
        f"/subscriptions/{subscription['id']}",
    )
    assert (after["url"], after["event_types"], after["rate_limit"]) == (
        "http://127.0.0.1:9/moved",
        ["call.assembled", "alert.resolved"],
        {"per_second": 2.5, "burst": 3},
    )
    assert no_events.status_code == 422
    assert "event_types" in no_events.text
    assert lifted.status_code == 303
    assert _api(client, acme, subscription["id"])["rate_limit"] is None


def test_an_endpoint_is_disabled_enabled_and_deleted_after_a_confirm(client: TestClient) -> None:
    acme = tenant(client, "acme")
    subscription = subscribe(client, acme, "http://127.0.0.1:9/hook")
    csrf = sign_in(client, acme.key)
    one = f"/subscriptions/{subscription['id']}"

    client.post(f"{one}/enabled", data={"csrf_token": csrf, "enabled": "false"})
    disabled = _api(client, acme, subscription["id"])["enabled"]
    client.post(f"{one}/enabled", data={"csrf_token": csrf, "enabled": "true"})
    enabled = _api(client, acme, subscription["id"])["enabled"]
    confirm = client.get(f"{one}/delete")
    kept = _api(client, acme, subscription["id"]) != {}
    deleted = client.post(f"{one}/delete", data={"csrf_token": csrf}, follow_redirects=False)

    assert (disabled, enabled, kept) == (False, True, True)
    assert confirm.status_code == 200
    assert f'action="{one}/delete"' in confirm.text
    assert (deleted.status_code, deleted.headers["location"]) == (303, "/subscriptions")
    assert _api(client, acme, subscription["id"]) == {}


def test_another_orgs_endpoint_cannot_be_changed(client: TestClient) -> None:
    acme, globex = tenant(client, "acme"), tenant(client, "globex")
    theirs = subscribe(client, globex, "http://127.0.0.1:9/theirs")
    csrf = sign_in(client, acme.key)
    one = f"/subscriptions/{theirs['id']}"

    answers = [
        client.post(f"{one}/edit", data={"csrf_token": csrf, "url": "http://127.0.0.1:9/x"}),
        client.post(f"{one}/enabled", data={"csrf_token": csrf, "enabled": "false"}),
        client.get(f"{one}/delete"),
        client.post(f"{one}/delete", data={"csrf_token": csrf}),
        client.post(f"{one}/delete", data={"csrf_token": "forged"}),
    ]

    assert [answer.status_code for answer in answers] == [404, 404, 404, 404, 403]
    after = _api(client, globex, theirs["id"])
    assert (after["url"], after["enabled"]) == ("http://127.0.0.1:9/theirs", True)
