"""The shapes of `GET /api/stats`: its query and its reply."""

from typing import Literal

from pydantic import BaseModel, Field

from callwatch.query.filters import CallFilters

GroupBy = Literal["agent", "source", "direction", "status", "hour", "day", "week"]


class StatsQuery(CallFilters):
    group_by: GroupBy | None = None


class Spread(BaseModel):
    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None


class CostTotals(BaseModel):
    currency: str | None
    calls: int = 0
    total: float = 0.0
    llm: float = 0.0
    stt: float = 0.0
    tts: float = 0.0
    telephony: float = 0.0
    platform: float = 0.0


class Aggregate(BaseModel):
    key: str | None = Field(
        None,
        description="the agent id, source name, direction or status; or the UTC hour "
        "(2026-11-20T13:00:00Z), day (2026-11-20) or week (its Monday, 2026-11-16)",
    )
    calls: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)
    by_end_reason: dict[str, int] = Field(default_factory=dict)
    answered: int = 0
    answer_rate: float | None = Field(None, description="answered / calls")
    duration_s: Spread = Field(default_factory=Spread)
    turn_latency_p50_ms: Spread = Field(default_factory=Spread, description="of per-call p50s")
    turn_latency_p95_ms: Spread = Field(default_factory=Spread, description="of per-call p95s")
    time_to_first_word_ms: Spread = Field(default_factory=Spread)
    cost: list[CostTotals] = Field(default_factory=list, description="one entry per currency")


class StatsResult(BaseModel):
    group_by: GroupBy | None
    percentiles: Literal["exact", "histogram"] = Field(
        "exact",
        description="exact: from every call's value; histogram: from the stats rollups' "
        "histograms, each p50 / p95 within `percentile_relative_error` of the exact one",
    )
    percentile_relative_error: float = Field(0.0, description="0 when exact; else 0.01")
    overall: Aggregate
    groups: list[Aggregate]
