"""Windowed alert conditions: what a rule measures over its last N minutes and when it fires."""

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

Metric = Literal[
    "failure_rate",
    "answer_rate",
    "latency_mean_ms",
    "latency_p95_ms",
    "cost_per_call",
    "call_count",
]
RATES = ("failure_rate", "answer_rate")
Verdict = Literal["firing", "clear", "unknown"]  # unknown: too few calls to judge


class WindowSpec(BaseModel):
    """`metric op threshold` over the calls assembled in the last `minutes`."""

    model_config = ConfigDict(extra="forbid")

    metric: Metric = Field(
        description="failure_rate: share of calls failed or ended by an error; answer_rate: "
        "share answered; latency_mean_ms / latency_p95_ms: mean / p95 across calls of each "
        "call's turn-latency p95; cost_per_call: mean cost.total; call_count: calls"
    )
    minutes: int = Field(ge=1, le=7 * 24 * 60, description="the window: the last N minutes")
    op: Literal[">", ">=", "<", "<="]
    threshold: float = Field(allow_inf_nan=False, description="rates are fractions (0.2 = 20%)")
    min_calls: int = Field(
        1,
        ge=1,
        le=1_000_000,
        description="calls with a value needed before the rule can fire (not for call_count)",
    )

    @field_validator("threshold")
    @classmethod
    def _rate_is_a_fraction(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("metric") in RATES and not 0 <= value <= 1:
            raise PydanticCustomError("rate", "a rate is a fraction from 0 to 1 (0.2 for 20%)")
        return value


@dataclass(frozen=True)
class Tally:
    """What the window's calls add up to (latency: each call's turn p95; cost: cost.total)."""

    calls: int
    failed: int = 0
    answered: int = 0
    latency_count: int = 0
    latency_mean: float | None = None
    latency_p95: float | None = None
    cost_count: int = 0
    cost_mean: float | None = None


@dataclass(frozen=True)
class Measure:
    samples: int  # the calls the value is computed over
    value: float | None


def measure(metric: Metric, tally: Tally) -> Measure:
    if metric == "call_count":
        return Measure(tally.calls, float(tally.calls))
    if metric in RATES:
        part = tally.failed if metric == "failure_rate" else tally.answered
        return Measure(tally.calls, part / tally.calls if tally.calls else None)
    if metric == "cost_per_call":
        return Measure(tally.cost_count, tally.cost_mean)
    value = tally.latency_mean if metric == "latency_mean_ms" else tally.latency_p95
    return Measure(tally.latency_count, value)


def judge(spec: WindowSpec, found: Measure) -> Verdict:
    """Firing or clear; unknown while fewer than `min_calls` calls have a value (call_count is
    always judged: zero calls is a count too)."""
    if spec.metric != "call_count" and (found.value is None or found.samples < spec.min_calls):
        return "unknown"
    assert found.value is not None
    return "firing" if breaches(found.value, spec.op, spec.threshold) else "clear"


def breaches(value: float, op: str, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    return value <= threshold


def describe(spec: WindowSpec) -> str:
    """The condition in words, e.g. `failure_rate > 0.2 over 15 min (at least 10 calls)`."""
    text = f"{spec.metric} {spec.op} {spec.threshold:g} over {spec.minutes} min"
    if spec.metric != "call_count" and spec.min_calls > 1:
        text += f" (at least {spec.min_calls} calls)"
    return text
