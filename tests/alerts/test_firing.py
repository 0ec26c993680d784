"""Alert rules on real parts: the API, call rules on assembled calls, window rules over time."""

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.testclient import TestClient

from callwatch.alerts import firing
from callwatch.downstream.effects import Effects, StreamEntry
from callwatch.downstream.streams import ALERTS_STREAM
from callwatch.model.events import CallStatus
from callwatch.model.records import CallDetails, CallRecord, Latency, Recording, Stats
from callwatch.runtime import Runtime
from callwatch.simulator import SimCall, events_for
from callwatch.tables import Call
from tests.conftest import create_org, create_source, path_of, signed
from tests.factories import T0, Tenant, add_call, add_source, tenant

NOW = datetime(2026, 11, 1, 13, 0, tzinfo=UTC)
FAILURE_RATE = {"metric": "failure_rate", "minutes": 10, "op": ">", "threshold": 0.3}


def post_rule(client: TestClient, owner: Tenant, **body: Any) -> dict[str, Any]:
    response = client.post("/api/alert-rules", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def listed_alerts(client: TestClient, owner: Tenant, query: str = "") -> list[dict[str, Any]]:
    response = client.get(f"/api/alerts{query}", headers=owner.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def on_call(runtime: Runtime, call_id: str, now: datetime = NOW) -> Effects:
    with runtime.sessions.begin() as session:
        call = session.get(Call, call_id)
        assert call is not None
        assert call.record is not None
        return firing.on_call(session, call, CallRecord.model_validate(call.record), now)


def evaluate(runtime: Runtime, now: datetime) -> Effects:
    with runtime.sessions.begin() as session:
        return firing.evaluate_windows(session, now)


def entry(
    event_type: str, owner: Tenant, alert: dict[str, Any], **scope: str | None
) -> StreamEntry:
    """The stream entry of an alert event: the alert as the API shows it, and its scope."""
    data = alert | {"agent_id": scope.get("agent_id"), "source_id": scope.get("source_id")}
    return StreamEntry(ALERTS_STREAM, event_type, owner.org_id, alert["call_id"], data)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# Call rules


def test_a_call_rule_fires_once_per_call(client: TestClient, runtime: Runtime) -> None:
    owner = tenant(client, "acme")
    rule = post_rule(
        client, owner, name="slow turns", kind="call", expression="latency.turn.p95 > 1500"
    )
    add_call(runtime, owner, "c-slow", latency=Latency(turn=Stats(count=3, p95=1800)))
    add_call(runtime, owner, "c-fast")

    fired = on_call(runtime, "c-slow")
    quiet = on_call(runtime, "c-fast")
    again = on_call(runtime, "c-slow", NOW + timedelta(minutes=5))  # assembled again: no repeat

    [alert] = listed_alerts(client, owner)
    assert alert == {
        "id": alert["id"],
        "rule_id": rule["id"],
        "rule_name": "slow turns",
        "kind": "call",
        "state": "fired",
        "call_id": "c-slow",
        "window_start": None,
        "window_end": None,
        "value": 1800.0,
        "threshold": 1500.0,
        "condition": "latency.turn.p95 > 1500",
        "triggered_at": "2026-11-01T13:00:00Z",
        "resolved_at": None,
    }
    scope = {"agent_id": "sales-bot", "source_id": owner.source_id}
    assert fired == Effects([], [entry("alert.triggered", owner, alert, **scope)])
    assert (quiet, again) == (Effects(), Effects())


def test_a_compound_call_rule_has_no_single_value(client: TestClient, runtime: Runtime) -> None:
    owner = tenant(client, "acme")
    post_rule(
        client,
        owner,
        name="failed or missing",
        kind="call",
        expression="status in [failed, no_answer] or recording.status == missing",
    )
    add_call(runtime, owner, "c1", status="failed", recording=Recording(status="missing"))

    on_call(runtime, "c1")

    [alert] = listed_alerts(client, owner)
    assert (alert["call_id"], alert["value"], alert["threshold"]) == ("c1", None, None)


def test_call_rules_keep_to_their_agent_source_and_enabled_flag(
    client: TestClient, runtime: Runtime
) -> None:
    owner = tenant(client, "acme")
    other_source = add_source(client, owner, "second")
    rule = {"kind": "call", "expression": "duration_s > 10"}
    by_agent = post_rule(client, owner, name="agent", agent_id="support-bot", **rule)
    by_source = post_rule(client, owner, name="source", source="second", **rule)
    post_rule(client, owner, name="off", enabled=False, **rule)
    add_call(runtime, owner, "sales-main")
    add_call(runtime, other_source, "sales-second")
    add_call(runtime, owner, "support-main", agent_id="support-bot")

    for call_id in ("sales-main", "sales-second", "support-main"):
        on_call(runtime, call_id)

    fired = {(alert["rule_id"], alert["call_id"]) for alert in listed_alerts(client, owner)}
    assert fired == {(by_source["id"], "sales-second"), (by_agent["id"], "support-main")}


def test_a_call_rule_fires_when_the_worker_assembles_a_matching_call(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)
    owner = Tenant(org_id="", key=key, source_id="", source="gen")
    source = create_source(client, key)
    rule = post_rule(
        client,
        owner,
        name="long sales calls",
        kind="call",
        expression="duration_s >= 60 and agent_id == sales-bot",
    )
    for call in (sim_call("sales-1", "sales-bot"), sim_call("support-1", "support-bot")):
        for body in events_for(call, embed_detail=True):
            raw = json.dumps(body).encode()
            headers = signed(source["webhook_secret"], raw)
            response = client.post(path_of(source["webhook_url"]), content=raw, headers=headers)
            assert response.status_code == 202, response.text

    sales = wait_assembled(client, owner, "sales-1")
    wait_assembled(client, owner, "support-1")

    assert [
        (alert["rule_id"], alert["call_id"], alert["value"], alert["threshold"], alert["state"])
        for alert in listed_alerts(client, owner)
    ] == [(rule["id"], sales["id"], 60.0, 60.0, "fired")]


def sim_call(call_id: str, agent_id: str) -> SimCall:
    started = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    return SimCall(
        call_id=call_id,
        agent_id=agent_id,
        agent_name=agent_id,
        campaign_id=None,
        direction="outbound",
        from_number="+15550001111",
        to_number="+15550002222",
        status=CallStatus.completed,
        started_at=started,
        ringing_at=started + timedelta(seconds=1),
        answered_at=started + timedelta(seconds=5),
        ended_at=started + timedelta(seconds=65),
        ring_s=4.0,
        detail=CallDetails(
            agent_id=agent_id,
            duration_s=60.0,
            recording=Recording(status="available", url="https://rec.example/1.wav"),
        ),
    )


def wait_assembled(client: TestClient, owner: Tenant, call_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        response = client.get(f"/api/calls/{call_id}", headers=owner.headers)
        if response.status_code == 200 and response.json()["assembly"]["state"] == "assembled":
            found: dict[str, Any] = response.json()
            return found
        time.sleep(0.1)
    raise AssertionError(f"{call_id} was not assembled")


# Window rules


def test_a_window_rule_fires_once_stays_open_and_resolves(
    client: TestClient, runtime: Runtime
) -> None:
    owner = tenant(client, "acme")
    rule = post_rule(
        client, owner, name="failing", kind="window", window=FAILURE_RATE | {"min_calls": 3}
    )
    add_call(runtime, owner, "ok-1", started_at=at(1))
    add_call(runtime, owner, "bad-1", started_at=at(2), status="failed", end_reason="error")
    add_call(runtime, owner, "bad-2", started_at=at(3), status="completed", end_reason="error")

    too_few = evaluate(runtime, at(2.5))  # 1 of 2 failed: over the threshold, under min_calls
    fired = evaluate(runtime, at(4))  # 2 of 3
    [opened] = listed_alerts(client, owner)
    still = [evaluate(runtime, at(minutes)) for minutes in (5, 6, 7)]
    for minutes in (6, 7, 8, 9):
        add_call(runtime, owner, f"ok-{minutes}", started_at=at(minutes))
    cleared = evaluate(runtime, at(9.5))  # 2 of 7
    after = evaluate(runtime, at(10))
    [resolved] = listed_alerts(client, owner)

    assert opened == {
        "id": opened["id"],
        "rule_id": rule["id"],
        "rule_name": "failing",
        "kind": "window",
        "state": "open",
        "call_id": None,
        "window_start": "2026-11-01T11:54:00Z",
        "window_end": "2026-11-01T12:04:00Z",
        "value": 2 / 3,
        "threshold": 0.3,
        "condition": "failure_rate > 0.3 over 10 min (at least 3 calls)",
        "triggered_at": "2026-11-01T12:04:00Z",
        "resolved_at": None,
    }
    assert resolved == opened | {"state": "resolved", "resolved_at": "2026-11-01T12:09:30Z"}
    assert too_few == Effects()
    assert fired == Effects([], [entry("alert.triggered", owner, opened)])
    assert still == [Effects(), Effects(), Effects()]
    assert cleared == Effects([], [entry("alert.resolved", owner, resolved)])
    assert after == Effects()


def test_a_cleared_window_rule_can_fire_again(client: TestClient, runtime: Runtime) -> None:
    owner = tenant(client, "acme")
    post_rule(client, owner, name="failing", kind="window", window=FAILURE_RATE)
    add_call(runtime, owner, "bad-1", started_at=at(1), status="failed")
    evaluate(runtime, at(2))
    add_call(runtime, owner, "ok-1", started_at=at(3))
    add_call(runtime, owner, "ok-2", started_at=at(4))
    add_call(runtime, owner, "ok-3", started_at=at(5))
    evaluate(runtime, at(6))  # 1 of 4
    add_call(runtime, owner, "bad-2", started_at=at(13), status="failed")
    add_call(runtime, owner, "bad-3", started_at=at(14), status="failed")
    evaluate(runtime, at(14.5))  # calls since 4.5: 1 ok, 2 failed

    assert [
        (alert["state"], alert["triggered_at"], alert["value"])
        for alert in listed_alerts(client, owner)
    ] == [
        ("open", "2026-11-01T12:14:30Z", 2 / 3),
        ("resolved", "2026-11-01T12:02:00Z", 1.0),
    ]


def test_an_open_alert_stays_open_while_there_are_too_few_calls_to_judge(
    client: TestClient, runtime: Runtime
) -> None:
    owner = tenant(client, "acme")
    post_rule(client, owner, name="failing", kind="window", window=FAILURE_RATE | {"min_calls": 2})
    add_call(runtime, owner, "bad-1", started_at=at(1), status="failed")
    add_call(runtime, owner, "bad-2", started_at=at(2), status="failed")
    evaluate(runtime, at(3))

    quiet = [evaluate(runtime, at(minutes)) for minutes in (12, 30, 60)]  # no calls at all

    assert quiet == [Effects(), Effects(), Effects()]
    assert [alert["state"] for alert in listed_alerts(client, owner)] == ["open"]


def test_disabling_a_window_rule_resolves_its_open_alert(
    client: TestClient, runtime: Runtime
) -> None:
    owner = tenant(client, "acme")
    rule = post_rule(client, owner, name="failing", kind="window", window=FAILURE_RATE)
    add_call(runtime, owner, "bad-1", started_at=at(1), status="failed")
    evaluate(runtime, at(2))
    response = client.patch(
        f"/api/alert-rules/{rule['id']}", json={"enabled": False}, headers=owner.headers
    )
    assert response.status_code == 200, response.text

    resolved = evaluate(runtime, at(3))
    later = evaluate(runtime, at(4))

    [alert] = listed_alerts(client, owner)
    assert (alert["state"], alert["resolved_at"]) == ("resolved", "2026-11-01T12:03:00Z")
    assert (resolved, later) == (Effects([], [entry("alert.resolved", owner, alert)]), Effects())


def test_window_rules_count_only_their_agent_and_source(
    client: TestClient, runtime: Runtime
) -> None:
    owner = tenant(client, "acme")
    second = add_source(client, owner, "second")
    window = FAILURE_RATE | {"threshold": 0.5, "min_calls": 2}
    by_agent = post_rule(
        client, owner, name="support", kind="window", window=window, agent_id="support-bot"
    )
    by_source = post_rule(
        client, owner, name="second", kind="window", window=window, source="second"
    )
    everything = post_rule(client, owner, name="all", kind="window", window=window)
    # support-bot: 2 of 2 failed; source `second`: 0 of 2; the org: 2 of 6.
    add_call(runtime, owner, "s1", started_at=at(1), agent_id="support-bot", status="failed")
    add_call(runtime, owner, "s2", started_at=at(2), agent_id="support-bot", status="failed")
    add_call(runtime, second, "x1", started_at=at(1))
    add_call(runtime, second, "x2", started_at=at(2))
    add_call(runtime, owner, "m1", started_at=at(1))
    add_call(runtime, owner, "m2", started_at=at(2))
    other = tenant(client, "other")  # another org's failures count for nobody here
    for n in range(5):
        add_call(runtime, other, f"o{n}", started_at=at(1), status="failed")

    effects = evaluate(runtime, at(3))

    [alert] = listed_alerts(client, owner)
    assert (alert["rule_id"], alert["value"]) == (by_agent["id"], 1.0)
    assert [entry.payload["agent_id"] for entry in effects.entries] == ["support-bot"]
    assert {by_source["id"], everything["id"]}.isdisjoint({alert["rule_id"]})


def test_each_window_metric_over_the_same_calls(client: TestClient, runtime: Runtime) -> None:
    owner = tenant(client, "acme")
    for n in range(5):
        turn = Stats(count=2, p95=1000.0 * (n + 1))
        cost = {"total": float(n + 1), "currency": "USD"}
        add_call(
            runtime, owner, f"c{n}", started_at=at(1 + n), latency=Latency(turn=turn), cost=cost
        )
    add_call(
        runtime,
        owner,
        "unanswered",
        started_at=at(6),
        status="no_answer",
        answered_at=None,
        latency=Latency(),
        cost=None,
    )
    for metric in (
        "answer_rate",
        "latency_mean_ms",
        "latency_p95_ms",
        "cost_per_call",
        "call_count",
    ):
        window = {"metric": metric, "minutes": 30, "op": ">=", "threshold": 0}
        post_rule(client, owner, name=metric, kind="window", window=window)

    evaluate(runtime, at(10))

    values = {alert["rule_name"]: alert["value"] for alert in listed_alerts(client, owner)}
    assert values == {
        "answer_rate": 5 / 6,
        "latency_mean_ms": 3000.0,  # of the 5 calls with a turn p95
        "latency_p95_ms": 4800.0,  # 1000…5000: 4000 + 0.8 * 1000
        "cost_per_call": 3.0,
        "call_count": 6.0,
    }


def test_too_few_calls_fires_with_no_calls_at_all(client: TestClient, runtime: Runtime) -> None:
    owner = tenant(client, "acme")
    window = {"metric": "call_count", "minutes": 5, "op": "<", "threshold": 1, "min_calls": 10}
    post_rule(client, owner, name="silence", kind="window", window=window)

    evaluate(runtime, NOW)

    assert [(alert["value"], alert["state"]) for alert in listed_alerts(client, owner)] == [
        (0.0, "open")
    ]


# The API


def test_alert_rules_crud(client: TestClient, runtime: Runtime) -> None:
    owner = tenant(client, "acme")
    created = post_rule(
        client,
        owner,
        name="slow",
        kind="call",
        expression="latency.turn.p95 > 1500",
        agent_id="sales-bot",
        source="main",
    )
    path = f"/api/alert-rules/{created['id']}"

    assert created == {
        "id": created["id"],
        "name": "slow",
        "kind": "call",
        "expression": "latency.turn.p95 > 1500",
        "window": None,
        "agent_id": "sales-bot",
        "source": "main",
        "source_id": owner.source_id,
        "enabled": True,
        "condition": "latency.turn.p95 > 1500",
        "created_at": created["created_at"],
        "updated_at": created["updated_at"],
    }
    assert client.get(path, headers=owner.headers).json() == created
    changed = client.patch(
        path,
        json={"expression": "cost.total > 1", "agent_id": None, "source": owner.source_id},
        headers=owner.headers,
    )
    assert changed.status_code == 200, changed.text
    assert {key: changed.json()[key] for key in ("expression", "agent_id", "source")} == {
        "expression": "cost.total > 1",
        "agent_id": None,
        "source": "main",
    }
    window = post_rule(client, owner, name="w", kind="window", window=FAILURE_RATE)
    assert window["window"] == FAILURE_RATE | {"min_calls": 1}
    listed = client.get("/api/alert-rules", headers=owner.headers).json()["items"]
    assert [rule["id"] for rule in listed] == [created["id"], window["id"]]

    add_call(runtime, owner, "c1", cost={"total": 2.0})
    on_call(runtime, "c1")
    assert len(listed_alerts(client, owner)) == 1
    deleted = client.delete(path, headers=owner.headers)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert client.get(path, headers=owner.headers).status_code == 404
    assert listed_alerts(client, owner) == []  # its alerts went with it


def test_a_broken_expression_is_a_422_pointing_at_it(client: TestClient) -> None:
    owner = tenant(client, "acme")

    response = client.post(
        "/api/alert-rules",
        json={"name": "slow", "kind": "call", "expression": "latency.turn.p95 > fast"},
        headers=owner.headers,
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Invalid input",
        "status": 422,
        "detail": "expression: at 20: expected a number after '>', found 'fast'",
        "field": "expression",
    }


def test_bad_rule_bodies_are_4xx_naming_the_field(client: TestClient) -> None:
    owner = tenant(client, "acme")
    call = {"name": "r", "kind": "call", "expression": "status == failed"}
    cases: list[tuple[Any, int, str | None, str]] = [
        (b"{not json", 400, None, "body is not valid JSON"),
        ({"kind": "call", "expression": "status == failed"}, 422, "name", "name: Field required"),
        (call | {"kind": "sometimes"}, 422, "kind", "kind: Input should be 'call' or 'window'"),
        (call | {"colour": "red"}, 422, "colour", "colour: Extra inputs are not permitted"),
        (
            {"name": "r", "kind": "call"},
            422,
            "expression",
            "expression: required: a condition "
            "on the call record, e.g. `latency.turn.p95 > 1500 and status in [completed]`",
        ),
        (call | {"window": FAILURE_RATE}, 422, "window", "window: only window rules have a window"),
        (
            {"name": "r", "kind": "window"},
            422,
            "window",
            'window: required, e.g. {"metric": '
            '"failure_rate", "minutes": 15, "op": ">", "threshold": 0.2}',
        ),
        (
            {"name": "r", "kind": "window", "window": FAILURE_RATE, "expression": "duration_s > 1"},
            422,
            "expression",
            "expression: only call rules have an expression",
        ),
        (
            {"name": "r", "kind": "window", "window": FAILURE_RATE | {"threshold": 20}},
            422,
            "window.threshold",
            "window.threshold: a rate is a fraction from 0 to 1 (0.2 for 20%)",
        ),
        (
            {"name": "r", "kind": "window", "window": FAILURE_RATE | {"minutes": 0}},
            422,
            "window.minutes",
            "window.minutes: Input should be greater than or equal to 1",
        ),
        (
            {"name": "r", "kind": "window", "window": FAILURE_RATE | {"metric": "vibes"}},
            422,
            "window.metric",
            "window.metric: Input should be 'failure_rate', 'answer_rate', "
            "'latency_mean_ms', 'latency_p95_ms', 'cost_per_call' or 'call_count'",
        ),
        (call | {"source": "nowhere"}, 422, "source", "source: no source 'nowhere' in this org"),
    ]
    for body, status, field, detail in cases:
        response = (
            client.post("/api/alert-rules", content=body, headers=owner.headers)
            if isinstance(body, bytes)
            else client.post("/api/alert-rules", json=body, headers=owner.headers)
        )
        problem = response.json()
        assert (response.status_code, problem.get("field"), problem["detail"][: len(detail)]) == (
            status,
            field,
            detail,
        ), body
    assert client.get("/api/alert-rules", headers=owner.headers).json() == {"items": []}


def test_bad_patches_are_422(client: TestClient) -> None:
    owner = tenant(client, "acme")
    rule = post_rule(client, owner, name="r", kind="call", expression="status == failed")
    path = f"/api/alert-rules/{rule['id']}"
    cases = [
        ({"kind": "window"}, "kind", "kind: a rule's kind cannot change; create a new rule"),
        ({"name": None}, "name", "name: Input should be a valid string"),
        (
            {"expression": "status ==="},
            "expression",
            "expression: at 10: expected a value after '==', found '='",
        ),
    ]
    for body, field, detail in cases:
        response = client.patch(path, json=body, headers=owner.headers)
        assert (response.status_code, response.json()["field"], response.json()["detail"]) == (
            422,
            field,
            detail,
        )
    assert client.get(path, headers=owner.headers).json() == rule


def test_another_orgs_rules_and_alerts_are_404(client: TestClient, runtime: Runtime) -> None:
    owner, stranger = tenant(client, "acme"), tenant(client, "other")
    rule = post_rule(client, owner, name="r", kind="call", expression="status == completed")
    add_call(runtime, owner, "c1")
    on_call(runtime, "c1")
    [alert] = listed_alerts(client, owner)
    path = f"/api/alert-rules/{rule['id']}"

    responses = [
        client.get(path, headers=stranger.headers),
        client.patch(path, json={"enabled": False}, headers=stranger.headers),
        client.delete(path, headers=stranger.headers),
        client.get(f"/api/alerts/{alert['id']}", headers=stranger.headers),
    ]

    assert [response.status_code for response in responses] == [404, 404, 404, 404]
    assert client.get("/api/alert-rules", headers=stranger.headers).json() == {"items": []}
    assert listed_alerts(client, stranger, f"?rule_id={rule['id']}") == []
    assert client.get(f"/api/alerts/{alert['id']}", headers=owner.headers).json() == alert
    assert client.get(path, headers=owner.headers).json()["enabled"] is True
    assert client.get(path).status_code == 401


def test_alerts_are_paged_newest_first_and_filtered(client: TestClient, runtime: Runtime) -> None:
    owner = tenant(client, "acme")
    every = post_rule(client, owner, name="all", kind="call", expression="duration_s > 0")
    failed = post_rule(client, owner, name="failed", kind="call", expression="status == failed")
    for n in range(5):
        add_call(runtime, owner, f"c{n}", status="failed" if n % 2 else "completed")
        on_call(runtime, f"c{n}", NOW + timedelta(minutes=n))

    page = client.get("/api/alerts?limit=2&page=2", headers=owner.headers).json()
    by_rule = listed_alerts(client, owner, f"?rule_id={failed['id']}")
    by_call = listed_alerts(client, owner, "?call_id=c3&state=fired")
    bad = client.get("/api/alerts?state=sleeping", headers=owner.headers)

    assert {key: page[key] for key in ("total", "skip", "limit", "page")} == {
        "total": 7,
        "skip": 2,
        "limit": 2,
        "page": 2,
    }
    assert [(a["call_id"], a["rule_name"]) for a in page["items"]] == [
        ("c3", "all"),
        ("c2", "all"),
    ]
    assert [alert["call_id"] for alert in by_rule] == ["c3", "c1"]
    assert {alert["rule_id"] for alert in by_call} == {every["id"], failed["id"]}
    assert (bad.status_code, bad.json()["field"]) == (422, "state")
