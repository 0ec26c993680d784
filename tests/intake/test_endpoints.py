"""Webhook intake: every row of the design.md §5 table, and never a 5xx for bad input."""

import json
import time
from http import HTTPStatus
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from callwatch.runtime import Runtime
from callwatch.tables import InboxEvent
from tests.conftest import create_org, create_source, path_of, signed


def event(
    call_id: str = "abc-123", status: str = "ringing", type_: str = "call.status_changed"
) -> dict[str, Any]:
    return {
        "type": type_,
        "timestamp": "2026-11-20T10:00:00Z",
        "data": {
            "call_id": call_id,
            "status": status,
            "agent_id": "sales-bot",
            "direction": "outbound",
            "from_number": "+15550001111",
            "to_number": "+15550002222",
            "campaign_id": None,
            "metadata": {},
        },
    }


@pytest.fixture
def source(client: TestClient) -> dict[str, Any]:
    return create_source(client, create_org(client))


def post(client: TestClient, source: dict[str, Any], body: bytes, headers: dict[str, str]) -> Any:
    return client.post(path_of(source["webhook_url"]), content=body, headers=headers)


def inbox_count(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(InboxEvent)) or 0


def test_accepted_event_is_stored_before_the_reply(client, source, runtime) -> None:
    body = json.dumps(event()).encode()
    response = post(client, source, body, signed(source["webhook_secret"], body))
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    [event_id] = response.json()["events"]
    with runtime.sessions() as session:
        row = session.get(InboxEvent, event_id)
    assert row is not None
    assert (row.provider_call_id, row.raw_body) == ("abc-123", body.decode())


def test_same_delivery_five_times_is_one_row(client, source, runtime) -> None:
    body = json.dumps(event()).encode()
    headers = signed(source["webhook_secret"], body, msg_id="msg_same")
    replies = [post(client, source, body, headers).json()["status"] for _ in range(5)]
    assert replies == ["accepted", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert inbox_count(runtime) == 1


@pytest.mark.parametrize(
    ("mutate", "detail"),
    [
        (lambda h: h | {"webhook-signature": "v1,AAAA"}, "does not match"),
        (lambda h: {k: v for k, v in h.items() if k != "webhook-id"}, "missing"),
        (lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}, "missing"),
        (lambda h: h | {"webhook-timestamp": "soon"}, "not an integer"),
    ],
)
def test_bad_signatures_are_401(client, source, runtime, mutate, detail) -> None:
    body = json.dumps(event()).encode()
    response = post(client, source, body, mutate(signed(source["webhook_secret"], body)))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"]
    assert inbox_count(runtime) == 0


@pytest.mark.parametrize("skew", [-400, 400])
def test_stale_or_future_timestamp_is_401(client, source, skew) -> None:
    body = json.dumps(event()).encode()
    headers = signed(source["webhook_secret"], body, timestamp=int(time.time()) + skew)
    response = post(client, source, body, headers)
    assert (response.status_code, response.json()["detail"]) == (
        401,
        "webhook-timestamp is outside the 5 minute tolerance",
    )


def test_wrong_secret_is_401(client, source) -> None:
    body = json.dumps(event()).encode()
    response = post(client, source, body, signed("whsec_" + "A" * 43 + "=", body))
    assert response.status_code == 401


def test_tampered_body_is_401(client, source) -> None:
    body = json.dumps(event()).encode()
    headers = signed(source["webhook_secret"], body)
    response = post(client, source, body.replace(b"ringing", b"busy"), headers)
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        (b"\xff\xfe", 400, None),
        (json.dumps({"type": "call.status_changed"}).encode(), 422, "timestamp"),
        (json.dumps(event(status="dancing")).encode(), 422, "data.status"),
        (json.dumps(event(type_="call.deleted")).encode(), 422, "type"),
        (json.dumps(event(call_id="")).encode(), 422, "data.call_id"),
        (json.dumps(event(status="ringing", type_="call.completed")).encode(), 422, "data.status"),
        (json.dumps([1, 2]).encode(), 422, None),
        (json.dumps(event(call_id="a\x00b")).encode(), 422, "data.call_id"),
    ],
)
def test_malformed_bodies_are_4xx_naming_the_field(client, source, body, status, field) -> None:
    response = post(client, source, body, signed(source["webhook_secret"], body))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json().get("field") == field


def test_body_over_the_limit_is_413(client, source) -> None:
    body = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = post(client, source, body, signed(source["webhook_secret"], body))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_unknown_token_is_404(client) -> None:
    response = client.post("/webhooks/not-a-token", content=b"{}")
    assert response.status_code == 404
    assert response.json()["title"] == "Not found"


@pytest.mark.parametrize(
    ("method", "suffix", "status"),
    [("GET", "", 405), ("PUT", "", 405), ("POST", "/more", 404)],
)
def test_only_a_post_to_one_token_reaches_the_endpoint(
    client, source, method, suffix, status
) -> None:
    # The app hands webhook POSTs to the endpoint before Starlette's router; the rest must be
    # routed as the route table says (the endpoint would answer this unsigned request with 401).
    response = client.request(method, path_of(source["webhook_url"]) + suffix, content=b"{}")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
    }


def test_disallowed_ip_is_401(client) -> None:
    key = create_org(client)
    source = create_source(client, key, settings={"allowed_ips": ["203.0.113.9"]})
    body = json.dumps(event()).encode()
    response = post(client, source, body, signed(source["webhook_secret"], body))
    assert response.status_code == 401
    assert "allowed_ips" in response.json()["detail"]


def test_past_a_sources_rate_limit_webhooks_get_429_with_retry_after(client: TestClient) -> None:
    key = create_org(client)
    # One token per 100 s: two webhooks pass, the third waits ~100 s for the next token.
    limit = {"per_second": 0.01, "burst": 2}
    source = create_source(client, key, settings={"rate_limit": limit})
    replies = []
    for n in range(3):
        body = json.dumps(event(call_id=f"limited-{n}")).encode()
        replies.append(post(client, source, body, signed(source["webhook_secret"], body)))
    assert [reply.status_code for reply in replies] == [202, 202, 429]
    assert replies[2].headers["retry-after"] == "100"
    assert replies[2].json() == {
        "type": "about:blank",
        "title": "Too many requests",
        "status": 429,
        "detail": "this source's rate limit is reached",
    }
    metrics = client.get("/metrics").text
    assert 'callwatch_webhooks_total{outcome="limited",provider="generic"} 1.0' in metrics
    # Lifted through the API, the limit stops at once in this process.
    lifted = client.patch(
        f"/api/sources/{source['id']}",
        json={"settings": {"rate_limit": None}},
        headers={"authorization": f"Bearer {key}"},
    )
    assert lifted.json()["settings"]["rate_limit"] is None
    body = json.dumps(event(call_id="limited-3")).encode()
    assert post(client, source, body, signed(source["webhook_secret"], body)).status_code == 202


@pytest.mark.parametrize(
    ("limit", "field"),
    [
        ({"per_second": 0}, "settings.rate_limit.per_second"),
        ({"per_second": 1e9}, "settings.rate_limit.per_second"),
        ({"per_second": 5, "burst": 0}, "settings.rate_limit.burst"),
        ({"burst": 5}, "settings.rate_limit.per_second"),
        ({"per_second": 5, "every": 1}, "settings.rate_limit.every"),
    ],
)
def test_a_bad_rate_limit_is_422_naming_the_field(
    client: TestClient, limit: dict[str, Any], field: str
) -> None:
    key = create_org(client)
    response = client.post(
        "/api/sources",
        json={"name": "limited", "provider": "generic", "settings": {"rate_limit": limit}},
        headers={"authorization": f"Bearer {key}"},
    )
    assert (response.status_code, response.json()["field"]) == (422, field)
