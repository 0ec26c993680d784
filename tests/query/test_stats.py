"""GET /api/stats: counts, answer rate, spreads and cost per currency, overall and grouped."""

from datetime import timedelta
from typing import Any

from starlette.testclient import TestClient

from callwatch.model.records import Cost, Latency, Recording, Stats
from callwatch.runtime import Runtime
from tests.factories import T0, Tenant, add_call, add_source, tenant


def latency(p50: float, p95: float, ttfw: float) -> Latency:
    return Latency(turn=Stats(p50=p50, p95=p95), time_to_first_word_ms=ttfw)


def four_calls(client: TestClient, runtime: Runtime) -> Tenant:
    acme = tenant(client, "acme")
    backup = add_source(client, acme, "backup")
    day2 = T0 + timedelta(days=1)
    add_call(runtime, acme, "c1", agent_id="a", duration_s=60.0, latency=latency(850, 1200, 500))
    add_call(
        runtime,
        acme,
        "c2",
        agent_id="a",
        end_reason="agent_hangup",
        duration_s=120.0,
        latency=latency(1000, 1500, 700),
        cost=Cost(total=0.3, currency="USD", llm=0.1, telephony=0.2),
    )
    add_call(
        runtime,
        backup,
        "c3",
        started_at=day2,
        agent_id="b",
        status="no_answer",
        end_reason="no_answer",
        answered_at=None,
        duration_s=0.0,
        recording=Recording(status="none"),
        latency=Latency(),
        cost=None,
    )
    add_call(
        runtime,
        acme,
        "c4",
        started_at=day2,
        agent_id="b",
        duration_s=30.0,
        latency=latency(700, 900, 300),
        cost=Cost(total=0.2, currency="EUR", llm=0.2),
    )
    return acme


def get_stats(client: TestClient, owner: Tenant, **params: Any) -> dict[str, Any]:
    response = client.get("/api/stats", params=params, headers=owner.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def cost(currency: str, calls: int, **parts: float) -> dict[str, Any]:
    zero = {"total": 0.0, "llm": 0.0, "stt": 0.0, "tts": 0.0, "telephony": 0.0, "platform": 0.0}
    return {"currency": currency, "calls": calls, **zero, **parts}


def test_overall_figures_worked_out_by_hand(client: TestClient, runtime: Runtime) -> None:
    acme = four_calls(client, runtime)

    overall = get_stats(client, acme)["overall"]

    # durations 0, 30, 60, 120: p50 between 30 and 60; p95 at 2.85 -> 60 + 0.85 * 60
    assert overall == {
        "key": None,
        "calls": 4,
        "by_status": {"completed": 3, "no_answer": 1},
        "by_end_reason": {"user_hangup": 2, "agent_hangup": 1, "no_answer": 1},
        "answered": 3,
        "answer_rate": 0.75,
        "duration_s": {"count": 4, "mean": 52.5, "p50": 45.0, "p95": 111.0},
        "turn_latency_p50_ms": {"count": 3, "mean": 850.0, "p50": 850.0, "p95": 985.0},
        "turn_latency_p95_ms": {"count": 3, "mean": 1200.0, "p50": 1200.0, "p95": 1470.0},
        "time_to_first_word_ms": {"count": 3, "mean": 500.0, "p50": 500.0, "p95": 680.0},
        "cost": [
            cost("EUR", 1, total=0.2, llm=0.2),
            cost("USD", 2, total=0.4, llm=0.15, telephony=0.25),
        ],
    }


def test_grouped_by_agent_day_and_source(client: TestClient, runtime: Runtime) -> None:
    acme = four_calls(client, runtime)

    def keys_and_calls(group_by: str) -> list[tuple[str, int]]:
        groups = get_stats(client, acme, group_by=group_by)["groups"]
        return [(group["key"], group["calls"]) for group in groups]

    assert keys_and_calls("agent") == [("a", 2), ("b", 2)]
    assert keys_and_calls("day") == [("2026-11-01", 2), ("2026-11-02", 2)]
    assert keys_and_calls("source") == [("backup", 1), ("main", 3)]
    by_agent = get_stats(client, acme, group_by="agent")["groups"]
    assert by_agent[1]["answer_rate"] == 0.5
    assert by_agent[1]["duration_s"] == {"count": 2, "mean": 15.0, "p50": 15.0, "p95": 28.5}


def test_filters_apply_to_stats(client: TestClient, runtime: Runtime) -> None:
    acme = four_calls(client, runtime)

    body = get_stats(client, acme, agent_id="a", status="completed")

    assert (body["overall"]["calls"], body["groups"]) == (2, [])


def test_unknown_group_by_is_a_422_naming_it(client: TestClient) -> None:
    acme = tenant(client, "acme")

    response = client.get("/api/stats?group_by=planet", headers=acme.headers)

    assert (response.status_code, response.json()["field"]) == (422, "group_by")
