"""Per-agent call quality over the last WINDOW_S seconds, for `GET /metrics`.

Agent ids come from the platforms, so there can be any number of them: only the `top` agents
with the most calls in the window get a label of their own, the rest are summed as
`agent="other"` (calls without an agent are `agent="none"`). The bound is
CALLWATCH_METRICS_TOP_AGENTS + 2 label values per family.
"""

from collections import Counter, defaultdict
from datetime import datetime, timedelta

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import select
from sqlalchemy.orm import Session

from callwatch.downstream.streams import bucket_of
from callwatch.observability.scrape import WINDOW_S, cumulative
from callwatch.tables import Call, Org

OTHER = "other"
NONE = "none"
# A call's median turn latency (the platform's figure): voice agents aim under one second.
TURN_BUCKETS_S = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


def quality(session: Session, now: datetime, top: int) -> list[Metric]:
    # Through ix_calls_org_assembled, one range per org, rather than a scan of every call.
    rows = session.execute(
        select(Call.agent_id, Call.answered_at.is_not(None), Call.latency_turn_p50_ms).where(
            Call.org_id.in_(select(Org.id)),
            Call.assembled_at >= now - timedelta(seconds=WINDOW_S),
        )
    ).all()
    by_agent = Counter(agent or NONE for agent, _, _ in rows)
    named = {agent for agent, _ in by_agent.most_common(top)}
    calls: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    turn_buckets: dict[str, Counter[str]] = {}
    turn_seconds: defaultdict[str, float] = defaultdict(float)  # their sum
    for agent_id, was_answered, turn_ms in rows:
        agent = agent_id or NONE
        label = agent if agent in named else OTHER
        calls[label] += 1
        answered[label] += bool(was_answered)
        if turn_ms is not None:
            seconds = turn_ms / 1000
            turn_buckets.setdefault(label, Counter())[bucket_of(seconds, TURN_BUCKETS_S)] += 1
            turn_seconds[label] += seconds
    minutes = f"{WINDOW_S / 60:g} minutes"
    calls_family = GaugeMetricFamily(
        "callwatch_recent_agent_calls",
        f"Calls assembled in the last {minutes}, by agent (the busiest agents, then other).",
        labels=["agent"],
    )
    answered_family = GaugeMetricFamily(
        "callwatch_recent_agent_calls_answered",
        "Of those calls, the ones answered (answer rate: this over recent_agent_calls).",
        labels=["agent"],
    )
    for label in sorted(calls):
        calls_family.add_metric([label], calls[label])
        answered_family.add_metric([label], answered[label])
    turn_family = HistogramMetricFamily(
        "callwatch_recent_agent_turn_latency_seconds",
        f"Median turn latency of each call assembled in the last {minutes}, by agent "
        "(a sliding window: use the buckets without rate()).",
        labels=["agent"],
    )
    for label, buckets in sorted(turn_buckets.items()):
        turn_family.add_metric([label], cumulative(TURN_BUCKETS_S, buckets), turn_seconds[label])
    return [calls_family, answered_family, turn_family]
