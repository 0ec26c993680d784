"""GET /api/calls (every filter, both paging styles), get, batch search and stored events."""

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from callwatch.model.records import Recording
from callwatch.pipeline import steps
from callwatch.query import queries
from callwatch.runtime import Runtime
from callwatch.tables import InboxEvent
from tests.conftest import path_of, signed
from tests.factories import T0, Tenant, add_call, add_source, tenant


@pytest.fixture
def acme(client: TestClient) -> Tenant:
    return tenant(client, "acme")


def ids(client: TestClient, owner: Tenant, **params: Any) -> list[str]:
    response = client.get("/api/calls", params=params, headers=owner.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def problem(client: TestClient, owner: Tenant, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params, headers=owner.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def at(hours: float) -> Any:
    return T0 + timedelta(hours=hours)


def test_each_filter_selects_its_calls(client: TestClient, runtime: Runtime, acme: Tenant) -> None:
    other_source = add_source(client, acme, "backup")
    add_call(runtime, acme, "c1", started_at=at(0))
    add_call(
        runtime,
        acme,
        "c2",
        started_at=at(1),
        status="no_answer",
        end_reason="no_answer",
        answered_at=None,
        duration_s=0.0,
        recording=Recording(status="none"),
        agent_id="support-bot",
        direction="inbound",
        from_number="+14440009999",
        customer_number="+14440009999",
    )
    add_call(runtime, other_source, "c3", started_at=at(2), campaign_id="spring", channel="web")
    add_call(runtime, acme, "c4", started_at=at(30), duration_s=300.0, end_reason="agent_hangup")

    assert ids(client, acme) == ["c4", "c3", "c2", "c1"]
    assert ids(client, acme, status="no_answer") == ["c2"]
    assert ids(client, acme, status=["no_answer", "completed"]) == ["c4", "c3", "c2", "c1"]
    assert ids(client, acme, status="no_answer,busy") == ["c2"]
    assert ids(client, acme, agent_id="support-bot") == ["c2"]
    assert ids(client, acme, assistant_id="support-bot") == ["c2"]
    assert ids(client, acme, campaign_id="spring") == ["c3"]
    assert ids(client, acme, source="backup") == ["c3"]
    assert ids(client, acme, direction="inbound") == ["c2"]
    assert ids(client, acme, channel="web") == ["c3"]
    assert ids(client, acme, customer_phone="0009999") == ["c2"]
    assert ids(client, acme, search="c3") == ["c3"]
    assert ids(client, acme, search="p-c1") == ["c1"]
    assert ids(client, acme, search="444000") == ["c2"]
    assert ids(client, acme, date_from=at(1).isoformat(), date_to=at(2).isoformat()) == [
        "c3",
        "c2",
    ]
    assert ids(client, acme, date_from="2026-11-02") == ["c4"]
    assert ids(client, acme, date_to="2026-11-01") == ["c3", "c2", "c1"]
    assert ids(client, acme, min_duration=100) == ["c4"]
    assert ids(client, acme, max_duration=0) == ["c2"]
    assert ids(client, acme, end_reason="agent_hangup") == ["c4"]
    assert ids(client, acme, has_recording="false") == ["c2"]
    assert ids(client, acme, has_recording="true") == ["c4", "c3", "c1"]


def test_agent_status_and_date_range_combine(
    client: TestClient, runtime: Runtime, acme: Tenant
) -> None:
    for hour in range(6):
        add_call(runtime, acme, f"a{hour}", started_at=at(hour), agent_id="a")
        add_call(runtime, acme, f"b{hour}", started_at=at(hour), agent_id="b")
    add_call(runtime, acme, "a-failed", started_at=at(3.5), agent_id="a", status="failed")

    found = ids(
        client,
        acme,
        agent_id="a",
        status="completed",
        date_from=at(2).isoformat(),
        date_to=at(4).isoformat(),
    )

    assert found == ["a4", "a3", "a2"]


def test_partial_customer_phone_with_both_paging_styles_and_totals(
    client: TestClient, runtime: Runtime, acme: Tenant
) -> None:
    for n in range(7):
        add_call(runtime, acme, f"m{n}", started_at=at(n), customer_number=f"+1999000{n}")
    add_call(runtime, acme, "other", started_at=at(10), customer_number="+18880000")

    def listing(**params: Any) -> dict[str, Any]:
        response = client.get(
            "/api/calls", params={"customer_phone": "999000", **params}, headers=acme.headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return {key: body[key] for key in ("total", "skip", "limit", "page")} | {
            "ids": [item["id"] for item in body["items"]]
        }

    assert listing(limit=3) == {
        "total": 7,
        "skip": 0,
        "limit": 3,
        "page": None,
        "ids": ["m6", "m5", "m4"],
    }
    assert listing(skip=3, limit=3) == {
        "total": 7,
        "skip": 3,
        "limit": 3,
        "page": None,
        "ids": ["m3", "m2", "m1"],
    }
    assert listing(page=3, limit=3) == {"total": 7, "skip": 6, "limit": 3, "page": 3, "ids": ["m0"]}
    assert listing(page=4, limit=3) == {"total": 7, "skip": 9, "limit": 3, "page": 4, "ids": []}


def test_summaries_leave_the_transcript_out_unless_asked(
    client: TestClient, runtime: Runtime, acme: Tenant
) -> None:
    stored = add_call(runtime, acme, "c1")

    plain = client.get("/api/calls", headers=acme.headers).json()["items"][0]
    full = client.get("/api/calls?include=transcript", headers=acme.headers).json()["items"][0]

    expected = stored.model_dump(mode="json")
    assert full == expected
    assert plain == {key: value for key, value in expected.items() if key != "transcript"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"skip": -1}, "skip"),
        ({"skip": 1, "page": 1}, "page"),
        ({"date_from": "yesterday"}, "date_from"),
        ({"date_to": "2026-13-45"}, "date_to"),
        ({"min_duration": 10, "max_duration": 5}, "min_duration"),
        ({"date_from": "2026-11-02", "date_to": "2026-11-01"}, "date_from"),
        ({"status": "exploded"}, "status"),
        ({"end_reason": "bored"}, "end_reason"),
        ({"direction": "sideways"}, "direction"),
        ({"has_recording": "maybe"}, "has_recording"),
        ({"include": "everything"}, "include"),
        ({"agent_id": "a", "assistant_id": "b"}, "assistant_id"),
        ({"search": "a\x00b"}, "search"),
    ],
)
def test_bad_parameters_are_a_422_naming_them(
    client: TestClient, acme: Tenant, params: dict[str, Any], field: str
) -> None:
    assert problem(client, acme, "/api/calls", **params)["field"] == field


def test_get_by_either_id(client: TestClient, runtime: Runtime, acme: Tenant) -> None:
    stored = add_call(runtime, acme, "c1").model_dump(mode="json")

    by_ours = client.get("/api/calls/c1", headers=acme.headers)
    by_theirs = client.get("/api/calls/p-c1", headers=acme.headers)

    assert (by_ours.json(), by_theirs.json()) == (stored, stored)


def test_search_keeps_the_order_asked_and_names_the_missing(
    client: TestClient, runtime: Runtime, acme: Tenant
) -> None:
    for call_id in ("c1", "c2", "c3"):
        add_call(runtime, acme, call_id)

    response = client.post(
        "/api/calls/search",
        json={"call_ids": ["c3", "nope", "p-c1", "c3"]},
        headers=acme.headers,
    )

    body = response.json()
    assert ([item["id"] for item in body["items"]], body["missing"]) == (["c3", "c1"], ["nope"])


@pytest.mark.parametrize("count", [0, 101])
def test_search_takes_1_to_100_ids(client: TestClient, acme: Tenant, count: int) -> None:
    response = client.post(
        "/api/calls/search",
        json={"call_ids": [f"c{n}" for n in range(count)]},
        headers=acme.headers,
    )

    assert (response.status_code, response.json()["field"]) == (422, "call_ids")


def test_events_are_the_stored_raw_bodies_oldest_first(
    client: TestClient, runtime: Runtime, acme: Tenant
) -> None:
    source = client.post(
        "/api/sources", json={"name": "hooks", "provider": "generic"}, headers=acme.headers
    ).json()
    bodies = [
        {
            "type": "call.status_changed",
            "timestamp": "2026-11-20T10:00:00Z",
            "data": {"call_id": "x1", "status": status},
        }
        for status in ("initiated", "ringing")
    ]
    raws = [json.dumps(body).encode() for body in bodies]
    for raw in raws:
        client.post(
            path_of(source["webhook_url"]),
            content=raw,
            headers=signed(source["webhook_secret"], raw),
        )
    with runtime.sessions() as session:
        stored = list(session.scalars(select(InboxEvent.id)))
    steps.ingest(runtime, stored)

    events = client.get("/api/calls/x1/events", headers=acme.headers).json()

    assert [(event["body"], event["event"]["status"]) for event in events] == [
        (raws[0].decode(), "initiated"),
        (raws[1].decode(), "ringing"),
    ]


def test_another_orgs_calls_are_invisible_everywhere(
    client: TestClient, runtime: Runtime, acme: Tenant
) -> None:
    add_call(runtime, acme, "c1", agent_id="a")
    rival = tenant(client, "rival")

    assert client.get("/api/calls/c1", headers=rival.headers).status_code == 404
    assert client.get("/api/calls/p-c1", headers=rival.headers).status_code == 404
    assert client.get("/api/calls/c1/events", headers=rival.headers).status_code == 404
    assert client.get("/api/calls/c%001", headers=acme.headers).status_code == 404
    assert ids(client, rival) == []
    assert ids(client, rival, search="c1") == []
    searched = client.post("/api/calls/search", json={"call_ids": ["c1"]}, headers=rival.headers)
    assert searched.json() == {"items": [], "missing": ["c1"]}
    assert client.get("/api/agents/a/call_stats", headers=rival.headers).json() == []
    assert client.get("/api/stats", headers=rival.headers).json()["overall"]["calls"] == 0
    exported = client.get("/api/calls/export?format=ndjson", headers=rival.headers)
    assert exported.text == ""


def test_past_the_cap_the_total_is_an_estimate_unless_exact_is_asked(
    client: TestClient, runtime: Runtime, acme: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(7):
        add_call(runtime, acme, f"c{n}", started_at=at(n))
    monkeypatch.setattr(queries, "COUNT_CAP", 3)

    def totals(**params: Any) -> tuple[int, bool]:
        body = client.get("/api/calls", params=params, headers=acme.headers).json()
        return body["total"], body["total_exact"]

    postgres = runtime.engine.dialect.name == "postgresql"
    total, exact = totals(limit=2)
    assert (exact, total >= 4) == ((False, True) if postgres else (True, True))
    assert totals(limit=2, count="exact") == (7, True)
    assert totals(limit=2, status="no_answer") == (0, True)
