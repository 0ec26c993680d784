"""The alert expression language and window judgements, table-driven (pure, no I/O)."""

from typing import Any

import pytest

from callwatch.alerts import expressions, windows
from callwatch.alerts.expressions import And, AnyEvaluationFailed, Compare, Member, Not, Or
from callwatch.alerts.windows import Measure, Tally, WindowSpec
from callwatch.model.records import Evaluation, Latency, Recording, Stats
from tests.factories import Tenant, record

OWNER = Tenant(org_id="org_1", key="", source_id="src_1", source="main")
# A completed call with turn p95 1200 ms, cost 0.1, 60 s, no evaluations.
GOOD = record(OWNER, "good")
# A failed call with nothing measured: every numeric field is null.
BARE = record(
    OWNER,
    "bare",
    status="failed",
    end_reason="error",
    answered_at=None,
    duration_s=None,
    cost=None,
    latency=Latency(),
    recording=Recording(status="missing"),
    analysis=None,
)
SLOW = record(
    OWNER,
    "slow",
    latency=Latency(turn=Stats(count=9, p95=1800), time_to_first_word_ms=2500),
    cost={"total": 1.25, "currency": "USD"},
    interruptions={"count": 4},
    evaluations=[Evaluation(name="greeting", success=True), Evaluation(name="goal", success=False)],
)
RECORDS = {"good": GOOD, "bare": BARE, "slow": SLOW}

ACCEPTED: list[tuple[str, expressions.Node, set[str]]] = [
    # expression, its tree, the sample records it fires on
    ("latency.turn.p95 > 1500", Compare("latency.turn.p95", ">", 1500.0), {"slow"}),
    ("latency.turn.p95 >= 1200", Compare("latency.turn.p95", ">=", 1200.0), {"good", "slow"}),
    ("latency.turn.p95 <= 1200", Compare("latency.turn.p95", "<=", 1200.0), {"good"}),
    ("cost.total >= 1", Compare("cost.total", ">=", 1.0), {"slow"}),
    ("cost.total < 1", Compare("cost.total", "<", 1.0), {"good"}),  # null cost: no match
    ("cost.total != 0.1", Compare("cost.total", "!=", 0.1), {"slow"}),  # null != 0.1 either
    ("duration_s < 5", Compare("duration_s", "<", 5.0), set()),
    ("duration_s == 60", Compare("duration_s", "==", 60.0), {"good", "slow"}),
    ("duration_s = 60", Compare("duration_s", "==", 60.0), {"good", "slow"}),
    (
        "latency.time_to_first_word_ms > 2e3",
        Compare("latency.time_to_first_word_ms", ">", 2000.0),
        {"slow"},
    ),
    ("interruptions.count >= 3", Compare("interruptions.count", ">=", 3.0), {"slow"}),
    ("cost.total > -1", Compare("cost.total", ">", -1.0), {"good", "slow"}),
    ("status in [failed, no_answer]", Member("status", ("failed", "no_answer")), {"bare"}),
    ("status in [failed,]", Member("status", ("failed",)), {"bare"}),
    ("status not in [failed]", Member("status", ("failed",), negated=True), {"good", "slow"}),
    ("end_reason == error", Compare("end_reason", "==", "error"), {"bare"}),
    ("end_reason != error", Compare("end_reason", "!=", "error"), {"good", "slow"}),
    ("recording.status == missing", Compare("recording.status", "==", "missing"), {"bare"}),
    ("agent_id == sales-bot", Compare("agent_id", "==", "sales-bot"), {"good", "bare", "slow"}),
    ("agent_id == 'Sales bot'", Compare("agent_id", "==", "Sales bot"), set()),
    ('agent_name == "Sales bot"', Compare("agent_name", "==", "Sales bot"), set(RECORDS)),
    ("to_number == +15550002222", Compare("to_number", "==", "+15550002222"), set(RECORDS)),
    ("analysis.success == true", Compare("analysis.success", "==", True), {"good", "slow"}),
    ("analysis.success != TRUE", Compare("analysis.success", "!=", True), set()),
    ("any evaluation failed", AnyEvaluationFailed(), {"slow"}),
    ("any evaluations failed", AnyEvaluationFailed(), {"slow"}),
    ("not any evaluation failed", Not(AnyEvaluationFailed()), {"good", "bare"}),
    (
        "status == completed and cost.total > 1",
        And((Compare("status", "==", "completed"), Compare("cost.total", ">", 1.0))),
        {"slow"},
    ),
    (
        "status == failed or latency.turn.p95 > 1500",
        Or((Compare("status", "==", "failed"), Compare("latency.turn.p95", ">", 1500.0))),
        {"bare", "slow"},
    ),
    (
        "status == failed OR duration_s < 5 AND cost.total > 1",  # and binds tighter
        Or(
            (
                Compare("status", "==", "failed"),
                And((Compare("duration_s", "<", 5.0), Compare("cost.total", ">", 1.0))),
            )
        ),
        {"bare"},
    ),
    (
        "(status == failed or duration_s < 5) and cost.total > 1",
        And(
            (
                Or((Compare("status", "==", "failed"), Compare("duration_s", "<", 5.0))),
                Compare("cost.total", ">", 1.0),
            )
        ),
        set(),
    ),
    # Three-valued: a null field is unknown, and `not unknown` is still unknown.
    ("not (cost.total > 1)", Not(Compare("cost.total", ">", 1.0)), {"good"}),
    (
        "cost.total > 1 or status == failed",  # unknown or true: true
        Or((Compare("cost.total", ">", 1.0), Compare("status", "==", "failed"))),
        {"bare", "slow"},
    ),
    (
        "not (cost.total > 1 and status == completed)",  # false and unknown: false, so not: true
        Not(And((Compare("cost.total", ">", 1.0), Compare("status", "==", "completed")))),
        {"good", "bare"},
    ),
]


@pytest.mark.parametrize(("expression", "tree", "fires_on"), ACCEPTED)
def test_accepted_expressions_parse_and_evaluate(
    expression: str, tree: expressions.Node, fires_on: set[str]
) -> None:
    parsed = expressions.parse(expression)

    assert parsed == tree
    assert {
        name for name, found in RECORDS.items() if expressions.matches(parsed, found)
    } == fires_on


def test_a_stored_record_evaluates_as_the_model_does() -> None:
    stored: dict[str, Any] = SLOW.model_dump(mode="json")

    assert [expressions.matches(expressions.parse(text), stored) for text, _, _ in ACCEPTED] == [
        expressions.matches(expressions.parse(text), SLOW) for text, _, _ in ACCEPTED
    ]


REJECTED = [
    ("", "at 1: expected a condition, e.g. latency.turn.p95 > 1500, found end of expression"),
    ("latency.turn.p95 > fast", "at 20: expected a number after '>', found 'fast'"),
    ("latency.turn.p95 >", "at 19: expected a number after '>', found end of expression"),
    (
        "latency.turn.p95 1500",
        "at 18: expected an operator (==, !=, <, <=, >, >=, in) after "
        "'latency.turn.p95', found '1500'",
    ),
    (
        "latency.turn.p59 > 1",
        "at 1: unknown field 'latency.turn.p59'; did you mean 'latency.turn.p99'?",
    ),
    ("cost.totl >= 1", "at 1: unknown field 'cost.totl'; did you mean 'cost.total'?"),
    ("speed > 1", "at 1: unknown field 'speed'"),
    (
        "cost > 1",
        "at 1: 'cost' is a group: name one of its fields (cost.currency, cost.llm, "
        "cost.per_minute, cost.platform, cost.stt, cost.telephony, …)",
    ),
    ("evaluations.success == false", "at 1: 'evaluations' is a list: use 'any evaluation failed'"),
    ("ended_at > 5", "at 1: 'ended_at' is a time and cannot be compared"),
    ("metadata.tier == gold", "at 1: 'metadata' is a map and cannot be compared"),
    ("status > failed", "at 8: 'status' is text: use ==, != or in, not '>'"),
    (
        "analysis.success < true",
        "at 18: 'analysis.success' is true or false: use == or !=, not '<'",
    ),
    ("analysis.success == yes", "at 21: expected true or false after '==', found 'yes'"),
    (
        "analysis.success in [true]",
        "at 18: 'analysis.success' is true or false: use == or !=, not 'in'",
    ),
    (
        "status == faild",
        "at 11: expected one of queued, initiated, ringing, in_progress, "
        "completed, failed, no_answer, busy, canceled, found 'faild'",
    ),
    (
        "recording.status == gone",
        "at 21: expected one of available, pending, missing, none, found 'gone'",
    ),
    ("status in failed", "at 11: expected '[' after 'in', found 'failed'"),
    ("status in [failed no_answer]", "at 19: expected ',' or ']', found 'no_answer'"),
    ("status in [failed,", "at 19: expected a value in the list, found end of expression"),
    ("status in []", "at 12: expected a value in the list, found ']'"),
    ("status not failed", "at 12: expected 'in' after 'not', found 'failed'"),
    ("agent_id == and", "at 13: expected a value after '==', found 'and'"),
    (
        "cost.total > 1 junk",
        "at 16: expected 'and', 'or' or the end of the expression, found 'junk'",
    ),
    (
        "cost.total > 1 and",
        "at 19: expected a condition, e.g. latency.turn.p95 > 1500, found end of expression",
    ),
    ("(status == failed", "at 18: expected ')' to close the '(' at 1, found end of expression"),
    ("status == failed)", "at 17: expected 'and', 'or' or the end of the expression, found ')'"),
    ("any evaluation", "at 15: expected 'failed' after 'any evaluation', found end of expression"),
    ("any call failed", "at 5: expected 'evaluation failed' after 'any', found 'call'"),
    (
        "status == failed && duration_s < 5",
        "at 18: unexpected character '&' (join conditions with and / or)",
    ),
    ("agent_id == 'sales", "at 13: unterminated string: close it with '"),
    ("duration_s < 5 ; drop table calls", "at 16: unexpected character ';'"),
    ("cost.total < 1e999", "at 14: number out of range: '1e999'"),
    ("__import__('os') == 1", "at 1: unknown field '__import__'"),
    ("(" * 40 + "status == failed" + ")" * 40, "at 33: nested too deeply (at most 32 levels)"),
    ("not " * 40 + "status == failed", "at 129: nested too deeply (at most 32 levels)"),
]


@pytest.mark.parametrize(("expression", "error"), REJECTED)
def test_rejected_expressions_say_where_and_what_was_expected(expression: str, error: str) -> None:
    with pytest.raises(expressions.ExpressionError) as raised:
        expressions.parse(expression)

    assert str(raised.value) == error


def test_a_lone_numeric_comparison_is_the_alerts_value() -> None:
    assert expressions.numeric_terms(
        expressions.parse("status == completed and cost.total > 1")
    ) == [Compare("cost.total", ">", 1.0)]
    assert expressions.numeric_terms(expressions.parse("status in [failed]")) == []


def spec(**fields: Any) -> WindowSpec:
    return WindowSpec.model_validate({"minutes": 15, "op": ">", "threshold": 0.2} | fields)


FULL = Tally(
    calls=10,
    failed=3,
    answered=6,
    latency_count=4,
    latency_mean=1100.0,
    latency_p95=1700.0,
    cost_count=5,
    cost_mean=0.25,
)
MEASURES = [
    ("failure_rate", FULL, Measure(10, 0.3)),
    ("answer_rate", FULL, Measure(10, 0.6)),
    ("latency_mean_ms", FULL, Measure(4, 1100.0)),
    ("latency_p95_ms", FULL, Measure(4, 1700.0)),
    ("cost_per_call", FULL, Measure(5, 0.25)),
    ("call_count", FULL, Measure(10, 10.0)),
    ("failure_rate", Tally(calls=0), Measure(0, None)),
    ("latency_mean_ms", Tally(calls=3), Measure(0, None)),
    ("call_count", Tally(calls=0), Measure(0, 0.0)),
]


@pytest.mark.parametrize(("metric", "tally", "expected"), MEASURES)
def test_what_a_window_measures(metric: windows.Metric, tally: Tally, expected: Measure) -> None:
    assert windows.measure(metric, tally) == expected


VERDICTS = [
    (spec(metric="failure_rate"), Measure(10, 0.3), "firing"),
    (spec(metric="failure_rate"), Measure(10, 0.2), "clear"),
    (spec(metric="failure_rate", op=">="), Measure(10, 0.2), "firing"),
    (spec(metric="failure_rate", min_calls=11), Measure(10, 0.9), "unknown"),
    (spec(metric="failure_rate"), Measure(0, None), "unknown"),
    (spec(metric="answer_rate", op="<", threshold=0.5), Measure(4, 0.25), "firing"),
    (spec(metric="latency_p95_ms", threshold=1500, min_calls=5), Measure(4, 1700.0), "unknown"),
    (spec(metric="call_count", op="<", threshold=1, min_calls=50), Measure(0, 0.0), "firing"),
    (spec(metric="call_count", op="<=", threshold=100), Measure(101, 101.0), "clear"),
]


@pytest.mark.parametrize(("window", "found", "verdict"), VERDICTS)
def test_when_a_window_fires(window: WindowSpec, found: Measure, verdict: str) -> None:
    assert windows.judge(window, found) == verdict


def test_a_window_in_words() -> None:
    assert windows.describe(spec(metric="failure_rate", min_calls=10)) == (
        "failure_rate > 0.2 over 15 min (at least 10 calls)"
    )
    assert windows.describe(spec(metric="call_count", op="<", threshold=5, min_calls=10)) == (
        "call_count < 5 over 15 min"
    )


def test_a_stored_record_of_another_shape_matches_nothing() -> None:
    assert (
        expressions.evaluate(expressions.parse("cost.total > 1"), {"cost": "not an object"}) is None
    )
    assert expressions.evaluate(expressions.parse("status in [failed]"), {}) is None
