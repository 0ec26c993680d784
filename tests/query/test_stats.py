"""GET /api/stats: counts, answer rate, spreads and cost per currency, overall and grouped."""

import copy
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from callwatch.app import create_app
from callwatch.model.records import Cost, Latency, Recording, Stats
from callwatch.runtime import Runtime
from callwatch.settings import Settings
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


# ---------------------------------------------------------------- from the rollups

GROUPINGS = (None, "agent", "source", "direction", "status", "hour", "day", "week")
PERCENTILES = ("p50", "p95")
SPREADS = ("duration_s", "turn_latency_p50_ms", "turn_latency_p95_ms", "time_to_first_word_ms")


@pytest.fixture
def rolled(settings: Settings) -> Iterator[TestClient]:
    """The API answering every stats query it can from the rollups (no window is small)."""
    with TestClient(create_app(settings.model_copy(update={"stats_exact_up_to": 0}))) as client:
        yield client


def without_percentiles(body: dict[str, Any]) -> dict[str, Any]:
    """The stats less their percentiles and means (compared apart)."""
    kept = copy.deepcopy(body)
    del kept["percentiles"], kept["percentile_relative_error"]
    for aggregate in [kept["overall"], *kept["groups"]]:
        for name in SPREADS:
            for percentile in PERCENTILES:
                aggregate[name].pop(percentile)
            aggregate[name].pop("mean")
    return kept


def assert_same_but_percentiles_within_1_percent(
    rolled: dict[str, Any], exact: dict[str, Any]
) -> None:
    if not exact["overall"]["calls"]:  # no call: nothing is rolled up, it reads the calls
        assert rolled == exact
        return
    assert (rolled["percentiles"], exact["percentiles"]) == ("histogram", "exact")
    assert without_percentiles(rolled) == without_percentiles(exact)
    for rolled_group, exact_group in zip(
        [rolled["overall"], *rolled["groups"]], [exact["overall"], *exact["groups"]], strict=True
    ):
        for name in SPREADS:
            # The calls' path sums floats, whose mean may round a tie (x.xx5) the other way
            # than the rollups' exact integer sums: at most 0.01 apart.
            mean, expected_mean = rolled_group[name]["mean"], exact_group[name]["mean"]
            assert (mean is None) == (expected_mean is None)
            assert mean is None or abs(mean - expected_mean) <= 0.0100001
            for percentile in PERCENTILES:
                value, expected = rolled_group[name][percentile], exact_group[name][percentile]
                if expected is None:
                    assert value is None
                else:  # 1 %, and the 0.01 both are rounded to
                    assert abs(value - expected) <= 0.01 * abs(expected) + 0.01, (name, percentile)


def test_every_grouping_from_the_rollups_is_the_exact_answer(
    client: TestClient, rolled: TestClient, runtime: Runtime
) -> None:
    acme = four_calls(client, runtime)

    for group_by in GROUPINGS:
        params = {} if group_by is None else {"group_by": group_by}
        exact = get_stats(client, acme, **params)
        assert_same_but_percentiles_within_1_percent(get_stats(rolled, acme, **params), exact)


def test_time_groupings_name_the_hour_day_and_monday_of_the_week(
    client: TestClient, runtime: Runtime
) -> None:
    acme = four_calls(client, runtime)

    def keys(group_by: str) -> list[str]:
        return [group["key"] for group in get_stats(client, acme, group_by=group_by)["groups"]]

    # T0 is Sunday 2026-11-01 12:00 UTC; its week began on Monday 2026-10-26.
    assert keys("hour") == ["2026-11-01T12:00:00Z", "2026-11-02T12:00:00Z"]
    assert keys("week") == ["2026-10-26", "2026-11-02"]
    assert keys("direction") == ["outbound"]
    assert keys("status") == ["completed", "no_answer"]


def test_filters_that_are_rollup_dimensions_are_answered_from_the_rollups(
    client: TestClient, rolled: TestClient, runtime: Runtime
) -> None:
    acme = four_calls(client, runtime)
    filters: list[dict[str, Any]] = [
        {"agent_id": "a", "status": "completed"},
        {"source": "backup"},
        {"direction": "outbound", "group_by": "agent"},
        {"status": ["completed", "no_answer"], "group_by": "day"},
        # Empty values are values (a name ''), as the calls read them: not "no filter".
        {"source": ""},
        {"source": "", "group_by": "day"},
        {"agent_id": ""},
    ]

    for params in filters:
        exact = get_stats(client, acme, **params)
        assert_same_but_percentiles_within_1_percent(get_stats(rolled, acme, **params), exact)


def test_other_filters_read_the_calls_exactly(rolled: TestClient, runtime: Runtime) -> None:
    acme = four_calls(rolled, runtime)

    by_end_reason = get_stats(rolled, acme, end_reason="agent_hangup")
    without_recording = get_stats(rolled, acme, has_recording="false")

    assert (by_end_reason["percentiles"], by_end_reason["overall"]["calls"]) == ("exact", 1)
    assert (without_recording["percentiles"], without_recording["overall"]["calls"]) == (
        "exact",
        1,
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_calls_and_windows_off_the_bucket_edges(
    client: TestClient, rolled: TestClient, runtime: Runtime, seed: int
) -> None:
    """Calls over 40 days, windows starting and ending inside hours: counts and sums exact,
    percentiles within 1 %, for every grouping."""
    rng = random.Random(seed)
    acme = tenant(client, "acme")
    backup = add_source(client, acme, "backup")
    for index in range(120):
        status = rng.choice(["completed", "completed", "completed", "no_answer", "busy"])
        answered = status == "completed"
        add_call(
            runtime,
            rng.choice([acme, backup]),
            f"g{index}",
            started_at=T0 + timedelta(seconds=rng.randrange(40 * 86400)),
            agent_id=rng.choice(["a", "b", "c", None]),
            direction=rng.choice(["inbound", "outbound"]),
            status=status,
            end_reason=rng.choice(["user_hangup", "agent_hangup"]) if answered else status,
            answered_at=None if not answered else T0,
            duration_s=round(rng.lognormvariate(4, 1), 3) if answered else 0.0,
            latency=latency(*sorted(round(rng.uniform(300, 3000), 1) for _ in range(3)))
            if answered
            else Latency(),
            cost=Cost(total=round(rng.uniform(0, 2), 4), currency=rng.choice(["USD", "EUR"]))
            if answered
            else None,
        )
    for _ in range(6):
        start = T0 + timedelta(seconds=rng.randrange(20 * 86400))
        end = start + timedelta(seconds=rng.randrange(1, 25 * 86400))
        window = {"date_from": start.isoformat(), "date_to": end.isoformat()}
        for group_by in GROUPINGS:
            params = window | ({} if group_by is None else {"group_by": group_by})
            exact = get_stats(client, acme, **params)
            assert_same_but_percentiles_within_1_percent(get_stats(rolled, acme, **params), exact)
        for group_by in (None, "agent", "day", "status"):  # the per-agent bins, then by dimensions
            params = (
                window | {"agent_id": "a"} | ({} if group_by is None else {"group_by": group_by})
            )
            exact = get_stats(client, acme, **params)
            assert_same_but_percentiles_within_1_percent(get_stats(rolled, acme, **params), exact)
