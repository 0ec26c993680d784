"""Subscriptions through the API: CRUD, secrets, filters, org scoping and bad input."""

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from callwatch.db import transaction
from callwatch.downstream import deliveries, subscriptions
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.tables import Delivery, DeliveryAttempt, Subscription
from tests.factories import Tenant, add_source, tenant

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_targets": True})


def create(client: TestClient, owner: Tenant, **body: Any) -> dict[str, Any]:
    payload = {"url": HOOK, "event_types": ["call.assembled"], **body}
    response = client.post("/api/subscriptions", json=payload, headers=owner.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def fan_out(
    runtime: Runtime, owner: Tenant, event_type: str, data: dict[str, Any], key: str = "k"
) -> set[str]:
    """The subscriptions that got a delivery of this event."""
    with transaction(runtime.sessions) as session:
        created = deliveries.fan_out(session, owner.org_id, event_type, data, key, runtime.clock())
        return {session.get_one(Delivery, each).subscription_id for each in created}


def test_create_shows_the_secret_once(client) -> None:
    owner = tenant(client, "acme")

    created = create(
        client,
        owner,
        event_types=["call.assembled", "alert.triggered", "call.assembled"],
        filters={"agent_id": ["sales-bot"], "source": ["main"], "status": ["failed"]},
        description="ops pager",
    )
    shown = client.get(f"/api/subscriptions/{created['id']}", headers=owner.headers).json()
    listed = client.get("/api/subscriptions", headers=owner.headers).json()

    assert created["secret"].startswith("whsec_")
    assert {key: value for key, value in created.items() if key != "secret"} == shown
    assert shown == {
        "id": created["id"],
        "url": HOOK,
        "description": "ops pager",
        "event_types": ["call.assembled", "alert.triggered"],
        "filters": {"agent_id": ["sales-bot"], "source": [owner.source_id], "status": ["failed"]},
        "enabled": True,
        "disabled_reason": None,
        "failing_since": None,
        "rate_limit": None,
        "previous_secret_expires_at": None,
        "created_at": shown["created_at"],
        "updated_at": shown["updated_at"],
    }
    assert listed == {"items": [shown]}


def test_the_secret_is_stored_encrypted(client, runtime) -> None:
    owner = tenant(client, "acme")
    created = create(client, owner)

    with runtime.sessions() as session:
        stored = session.get_one(Subscription, created["id"])
        assert created["secret"] not in stored.secret
        assert subscriptions.signing_secrets(stored, runtime.vault, runtime.clock()) == [
            created["secret"]
        ]


def test_rotation_signs_with_both_secrets_until_the_overlap_ends(client, runtime, settings) -> None:
    owner = tenant(client, "acme")
    created = create(client, owner)

    rotated = client.post(
        f"/api/subscriptions/{created['id']}/rotate-secret", headers=owner.headers
    ).json()
    shown = client.get(f"/api/subscriptions/{created['id']}", headers=owner.headers).json()

    assert rotated == {
        "id": created["id"],
        "secret": rotated["secret"],
        "previous_secret_expires_at": shown["previous_secret_expires_at"],
    }
    with runtime.sessions() as session:
        stored = session.get_one(Subscription, created["id"])
        assert stored.previous_secret_until is not None
        ends = stored.previous_secret_until
        during = subscriptions.signing_secrets(stored, runtime.vault, ends - timedelta(seconds=1))
        after = subscriptions.signing_secrets(stored, runtime.vault, ends)
    assert during == [rotated["secret"], created["secret"]]
    assert after == [rotated["secret"]]
    assert ends - stored.updated_at == timedelta(seconds=settings.secret_rotation_overlap_s)


def test_patch_changes_only_what_is_given(client) -> None:
    owner = tenant(client, "acme")
    created = create(client, owner, description="before")
    path = f"/api/subscriptions/{created['id']}"

    changed = client.patch(
        path,
        json={"event_types": ["call.status_changed"], "filters": {"status": ["busy"]}},
        headers=owner.headers,
    )
    cleared = client.patch(path, json={"description": None}, headers=owner.headers)

    assert changed.status_code == 200, changed.text
    assert (changed.json()["event_types"], changed.json()["filters"]) == (
        ["call.status_changed"],
        {"status": ["busy"]},
    )
    assert (changed.json()["url"], changed.json()["description"]) == (HOOK, "before")
    assert cleared.json()["description"] is None


def test_a_rate_limit_is_set_shown_changed_and_lifted(client) -> None:
    owner = tenant(client, "acme")
    created = create(client, owner, rate_limit={"per_second": 5, "burst": 10})
    path = f"/api/subscriptions/{created['id']}"

    shown = client.get(path, headers=owner.headers).json()["rate_limit"]
    defaulted = client.patch(path, json={"rate_limit": {"per_second": 2.5}}, headers=owner.headers)
    kept = client.patch(path, json={"description": "other"}, headers=owner.headers)
    lifted = client.patch(path, json={"rate_limit": None}, headers=owner.headers)
    listed = client.get("/api/subscriptions", headers=owner.headers).json()["items"]

    assert (created["rate_limit"], shown) == ({"per_second": 5.0, "burst": 10},) * 2
    assert defaulted.json()["rate_limit"] == {"per_second": 2.5, "burst": 3}  # a second's worth
    assert kept.json()["rate_limit"] == {"per_second": 2.5, "burst": 3}
    assert (lifted.json()["rate_limit"], listed[0]["rate_limit"]) == (None, None)


def test_disabling_cancels_pending_deliveries_and_enabling_clears_the_reason(
    client, runtime
) -> None:
    owner = tenant(client, "acme")
    created = create(client, owner)
    path = f"/api/subscriptions/{created['id']}"
    fan_out(runtime, owner, "call.assembled", {"call_id": "c1"})

    disabled = client.patch(path, json={"enabled": False}, headers=owner.headers).json()
    enabled = client.patch(path, json={"enabled": True}, headers=owner.headers).json()
    log = client.get(path + "/deliveries", headers=owner.headers).json()

    assert (disabled["enabled"], disabled["disabled_reason"]) == (
        False,
        "disabled through the API",
    )
    assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)
    assert [(d["state"], d["last_error"]) for d in log["items"]] == [
        ("canceled", "subscription disabled: disabled through the API")
    ]


def test_delete_removes_the_subscription_and_its_deliveries(client, runtime) -> None:
    owner = tenant(client, "acme")
    created = create(client, owner)
    fan_out(runtime, owner, "call.assembled", {"call_id": "c1"})
    path = f"/api/subscriptions/{created['id']}"

    deleted = client.delete(path, headers=owner.headers)
    again = client.delete(path, headers=owner.headers)

    assert (deleted.status_code, again.status_code) == (204, 404)
    assert client.get(path, headers=owner.headers).status_code == 404
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_another_orgs_subscription_is_404_everywhere(client, runtime) -> None:
    owner, other = tenant(client, "acme"), tenant(client, "globex")
    created = create(client, owner)
    [delivery_id] = _created_deliveries(runtime, owner, "call.assembled", {"call_id": "c1"})
    base = f"/api/subscriptions/{created['id']}"
    span = {"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}

    responses = [
        client.get(base, headers=other.headers),
        client.patch(base, json={"enabled": False}, headers=other.headers),
        client.delete(base, headers=other.headers),
        client.post(base + "/rotate-secret", headers=other.headers),
        client.get(base + "/deliveries", headers=other.headers),
        client.post(f"{base}/deliveries/{delivery_id}/resend", headers=other.headers),
        client.post(base + "/resend", json=span, headers=other.headers),
    ]

    assert [(r.status_code, r.json()["detail"]) for r in responses] == [
        (404, f"no subscription {created['id']!r}")
    ] * len(responses)
    assert client.get("/api/subscriptions", headers=other.headers).json() == {"items": []}
    assert client.get(base, headers=owner.headers).json()["enabled"] is True


def _created_deliveries(
    runtime: Runtime, owner: Tenant, event_type: str, data: dict[str, Any]
) -> list[str]:
    with transaction(runtime.sessions) as session:
        return deliveries.fan_out(session, owner.org_id, event_type, data, "k", runtime.clock())


def test_a_delivery_of_another_subscription_is_404(client, runtime) -> None:
    owner = tenant(client, "acme")
    first, second = create(client, owner), create(client, owner)
    created = _created_deliveries(runtime, owner, "call.assembled", {"call_id": "c1"})
    with runtime.sessions() as session:
        of_first = session.scalar(
            select(Delivery.id).where(
                Delivery.id.in_(created), Delivery.subscription_id == first["id"]
            )
        )

    response = client.post(
        f"/api/subscriptions/{second['id']}/deliveries/{of_first}/resend", headers=owner.headers
    )

    assert (response.status_code, response.json()["detail"]) == (404, f"no delivery {of_first!r}")


BAD_BODIES = [
    (b"{not json", 400, None),
    (b"[]", 422, None),
    (b'{"event_types": ["call.assembled"]}', 422, "url"),
    (b'{"url": "http://127.0.0.1:9/", "event_types": []}', 422, "event_types"),
    (b'{"url": "http://127.0.0.1:9/", "event_types": ["call.exploded"]}', 422, "event_types.0"),
    (b'{"url": "http://127.0.0.1:9/", "event_types": "call.assembled"}', 422, "event_types"),
    (b'{"url": "ftp://127.0.0.1/", "event_types": ["call.assembled"]}', 422, "url"),
    (b'{"url": "http://", "event_types": ["call.assembled"]}', 422, "url"),
    (b'{"url": 5, "event_types": ["call.assembled"]}', 422, "url"),
    (
        b'{"url": "http://127.0.0.1:9/", "event_types": ["call.assembled"], "eventtypes": []}',
        422,
        "eventtypes",
    ),
    (
        b'{"url": "http://127.0.0.1:9/", "event_types": ["call.assembled"],'
        b' "filters": {"agent": ["x"]}}',
        422,
        "filters.agent",
    ),
    (
        b'{"url": "http://127.0.0.1:9/", "event_types": ["call.assembled"],'
        b' "filters": {"status": ["exploded"]}}',
        422,
        "filters.status.0",
    ),
    (
        b'{"url": "http://127.0.0.1:9/", "event_types": ["call.assembled"],'
        b' "filters": {"source": ["main", "nope"]}}',
        422,
        "filters.source.1",
    ),
    (
        b'{"url": "http://127.0.0.1:9/", "event_types": ["call.assembled"], "enabled": "maybe"}',
        422,
        "enabled",
    ),
    (
        b'{"url": "http://127.0.0.1:9/\\u0000", "event_types": ["call.assembled"]}',
        422,
        "url",
    ),
    (
        b'{"url": "http://127.0.0.1:9/", "event_types": ["call.assembled"],'
        b' "rate_limit": {"per_second": 0}}',
        422,
        "rate_limit.per_second",
    ),
    (
        b'{"url": "http://127.0.0.1:9/", "event_types": ["call.assembled"],'
        b' "rate_limit": {"per_second": 5, "burst": 0}}',
        422,
        "rate_limit.burst",
    ),
    (
        b'{"url": "http://127.0.0.1:9/", "event_types": ["call.assembled"],'
        b' "rate_limit": {"per_second": 5, "burst_size": 9}}',
        422,
        "rate_limit.burst_size",
    ),
    (
        b'{"url": "http://127.0.0.1:9/", "event_types": ["call.assembled"],'
        b' "rate_limit": {"per_second": 1e9}}',
        422,
        "rate_limit.per_second",
    ),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_BODIES)
def test_bad_subscription_bodies_are_4xx_naming_the_field(client, body, status, field) -> None:
    owner = tenant(client, "acme")
    headers = owner.headers | {"content-type": "application/json"}

    response = client.post("/api/subscriptions", content=body, headers=headers)

    assert (response.status_code, response.headers["content-type"]) == (
        status,
        "application/problem+json",
    )
    assert response.json().get("field") == field


def test_unknown_event_type_is_a_clear_422(client) -> None:
    owner = tenant(client, "acme")
    body = {"url": HOOK, "event_types": ["call.assembled", "call.exploded"]}

    response = client.post("/api/subscriptions", json=body, headers=owner.headers)

    assert response.json()["field"] == "event_types.1"
    assert response.json()["detail"].startswith(
        "event_types.1: Input should be 'call.status_changed', 'call.assembled', "
        "'call.assembly_failed', 'call.deleted', 'alert.triggered' or 'alert.resolved'"
    )


BAD_OTHERS = [
    ("patch", "", {"url": None}, 422, "url"),
    ("patch", "", {"enabled": None}, 422, "enabled"),
    ("patch", "", {"event_types": ["nope"]}, 422, "event_types.0"),
    ("patch", "", {"url": "gopher://x/"}, 422, "url"),
    ("patch", "", {"secret": "whsec_mine"}, 422, "secret"),
    (
        "post",
        "/resend",
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        422,
        "from",
    ),
    ("post", "/resend", {"from": "yesterday", "to": "2026-01-01T00:00:00Z"}, 422, "from"),
    ("post", "/resend", {"to": "2026-01-01T00:00:00Z"}, 422, "from"),
    ("get", "/deliveries?limit=0", None, 422, "limit"),
    ("get", "/deliveries?state=lost", None, 422, "state"),
    ("get", "/deliveries?include=secret", None, 422, "include"),
]


@pytest.mark.parametrize(("method", "suffix", "body", "status", "field"), BAD_OTHERS)
def test_bad_input_elsewhere_is_4xx_naming_the_field(
    client, method, suffix, body, status, field
) -> None:
    owner = tenant(client, "acme")
    created = create(client, owner)
    url = f"/api/subscriptions/{created['id']}{suffix}"

    response = client.request(method, url, json=body, headers=owner.headers)

    assert (response.status_code, response.json()["field"]) == (status, field)


def test_resending_for_a_disabled_subscription_is_409(client, runtime) -> None:
    owner = tenant(client, "acme")
    created = create(client, owner)
    [delivery_id] = _created_deliveries(runtime, owner, "call.assembled", {"call_id": "c1"})
    base = f"/api/subscriptions/{created['id']}"
    client.patch(base, json={"enabled": False}, headers=owner.headers)

    one = client.post(f"{base}/deliveries/{delivery_id}/resend", headers=owner.headers)
    span = {"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
    many = client.post(base + "/resend", json=span, headers=owner.headers)

    assert [(r.status_code, r.json()["field"]) for r in (one, many)] == [(409, "enabled")] * 2


def test_no_auth_is_401(client) -> None:
    assert client.get("/api/subscriptions").status_code == 401
    assert client.post("/api/subscriptions", json={}).status_code == 401


MATCHES = [
    ({}, {"agent_id": "a"}, True),
    ({}, {}, True),
    ({"agent_id": ["a", "b"]}, {"agent_id": "b"}, True),
    ({"agent_id": ["a"]}, {"agent_id": "c"}, False),
    ({"agent_id": ["a"]}, {}, False),  # an event without the field does not match
    ({"agent_id": ["a"]}, {"agent_id": None}, False),
    ({"status": ["failed", "busy"]}, {"status": "busy"}, True),
    ({"status": ["failed"]}, {"status": "completed"}, False),
    ({"source": ["src_1"]}, {"source_id": "src_1"}, True),
    ({"source": ["src_1"]}, {"source_id": "src_2"}, False),
    ({"agent_id": ["a"], "status": ["failed"]}, {"agent_id": "a", "status": "failed"}, True),
    ({"agent_id": ["a"], "status": ["failed"]}, {"agent_id": "a", "status": "busy"}, False),
]


@pytest.mark.parametrize(("filters", "data", "expected"), MATCHES)
def test_matches(filters, data, expected) -> None:
    assert subscriptions.matches(filters, data) is expected


def test_fan_out_follows_event_types_filters_and_enabled(client, runtime) -> None:
    owner = tenant(client, "acme")
    other_source = add_source(client, owner, "second")
    everything = create(client, owner, event_types=list(subscriptions.EVENT_TYPES))["id"]
    failed_only = create(client, owner, filters={"status": ["failed", "no_answer"]})["id"]
    by_agent = create(client, owner, filters={"agent_id": ["support-bot"]})["id"]
    by_source = create(client, owner, filters={"source": [other_source.source_id]})["id"]
    by_name = create(client, owner, filters={"source": ["second"], "status": ["failed"]})["id"]
    create(client, owner, enabled=False)
    alerts_only = create(client, owner, event_types=["alert.triggered"])["id"]
    elsewhere = tenant(client, "globex")
    create(client, elsewhere)

    def call(status: str, agent: str, source: Tenant) -> dict[str, Any]:
        return {"call_id": "c", "status": status, "agent_id": agent, "source_id": source.source_id}

    cases = [
        (call("completed", "sales-bot", owner), {everything}),
        (call("failed", "sales-bot", owner), {everything, failed_only}),
        (call("completed", "support-bot", owner), {everything, by_agent}),
        (call("completed", "sales-bot", other_source), {everything, by_source}),
        (call("failed", "sales-bot", other_source), {everything, failed_only, by_source, by_name}),
    ]
    for index, (data, expected) in enumerate(cases):
        assert fan_out(runtime, owner, "call.assembled", data, f"k{index}") == expected
    assert fan_out(runtime, owner, "alert.triggered", {"rule_id": "r"}, "a1") == {
        everything,
        alerts_only,
    }
    assert fan_out(runtime, owner, "call.status_changed", call("ringing", "x", owner)) == {
        everything
    }


def test_the_delivery_log_pages_newest_first_with_attempts(client, runtime) -> None:
    owner = tenant(client, "acme")
    created = create(client, owner)
    made = [
        _created_deliveries_keyed(runtime, owner, f"k{n}", runtime.clock() + timedelta(seconds=n))
        for n in range(3)
    ]
    with transaction(runtime.sessions) as session:
        session.add(
            DeliveryAttempt(
                id="att_1",
                delivery_id=made[0],
                number=1,
                started_at=runtime.clock(),
                duration_ms=12.5,
                status_code=500,
                error="HTTP 500",
                outcome="retry",
            )
        )
    base = f"/api/subscriptions/{created['id']}/deliveries"

    first = client.get(base + "?limit=2", headers=owner.headers).json()
    second = client.get(base + "?limit=2&skip=2&include=payload", headers=owner.headers).json()
    pending = client.get(base + "?state=pending,failed", headers=owner.headers).json()
    none = client.get(base + "?state=delivered", headers=owner.headers).json()

    assert ([item["id"] for item in first["items"]], first["total"]) == (made[:0:-1], 3)
    assert (first["items"][0]["payload"], second["items"][0]["payload"]["data"]) == (
        None,
        {"call_id": "c0"},
    )
    [item] = second["items"]
    assert item["attempts"] == [
        {
            "number": 1,
            "started_at": item["attempts"][0]["started_at"],
            "duration_ms": 12.5,
            "status_code": 500,
            "error": "HTTP 500",
            "outcome": "retry",
        }
    ]
    assert (pending["total"], none) == (3, {"items": [], "total": 0, "skip": 0, "limit": 100})


def _created_deliveries_keyed(runtime: Runtime, owner: Tenant, key: str, at: Any) -> str:
    with transaction(runtime.sessions) as session:
        data = {"call_id": "c" + key[1:]}
        [created] = deliveries.fan_out(session, owner.org_id, "call.assembled", data, key, at)
        return created
