"""Per-agent call quality: the busiest agents by name, the rest as `other`, over the window."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from callwatch.observability import agents
from callwatch.runtime import Runtime
from callwatch.tables import Call
from tests.factories import Tenant, add_call, tenant


@pytest.fixture
def owner(client: TestClient) -> Tenant:
    return tenant(client, "acme")


def test_the_top_agents_are_named_and_the_rest_summed_as_other(
    runtime: Runtime, owner: Tenant
) -> None:
    now = datetime.now(UTC)
    # (agent, answered, median turn latency ms, assembled seconds ago)
    calls = [
        ("sales", True, 400.0, 10),
        ("sales", True, 900.0, 20),
        ("sales", False, None, 30),
        ("support", True, 1200.0, 40),
        ("support", False, None, 50),
        (None, True, 300.0, 60),
        ("billing", True, 2500.0, 70),
        ("sales", True, 100.0, 3600),  # before the window
    ]
    for n, (agent, answered, turn_ms, age) in enumerate(calls):
        add_call(runtime, owner, f"c{n}")
        with runtime.sessions.begin() as session:
            session.execute(
                update(Call)
                .where(Call.id == f"c{n}")
                .values(
                    agent_id=agent,
                    answered_at=now if answered else None,
                    latency_turn_p50_ms=turn_ms,
                    assembled_at=now - timedelta(seconds=age),
                )
            )

    with runtime.sessions.begin() as session:
        families = agents.quality(session, now, top=2)

    assert {
        (sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for family in families
        for sample in family.samples
        if not sample.name.endswith("_bucket") or sample.labels["le"] in ("0.5", "1", "+Inf")
    } == {
        ("callwatch_recent_agent_calls", (("agent", "sales"),), 3),
        ("callwatch_recent_agent_calls", (("agent", "support"),), 2),
        ("callwatch_recent_agent_calls", (("agent", "other"),), 2),
        ("callwatch_recent_agent_calls_answered", (("agent", "sales"),), 2),
        ("callwatch_recent_agent_calls_answered", (("agent", "support"),), 1),
        ("callwatch_recent_agent_calls_answered", (("agent", "other"),), 2),
        *(
            (f"callwatch_recent_agent_turn_latency_seconds{suffix}", (("agent", agent), *le), value)
            for agent, counts in [
                ("sales", [1, 2, 2, 2, 1.3]),
                ("support", [0, 0, 1, 1, 1.2]),
                ("other", [1, 1, 2, 2, 2.8]),
            ]
            for (suffix, le), value in zip(
                [
                    ("_bucket", (("le", "0.5"),)),
                    ("_bucket", (("le", "1"),)),
                    ("_bucket", (("le", "+Inf"),)),
                    ("_count", ()),
                    ("_sum", ()),
                ],
                counts,
                strict=True,
            )
        ),
    }


def test_no_agent_is_named_when_the_bound_is_zero(runtime: Runtime, owner: Tenant) -> None:
    now = datetime.now(UTC)
    add_call(runtime, owner, "c1")
    with runtime.sessions.begin() as session:
        session.execute(
            update(Call).values(
                agent_id="sales", answered_at=None, latency_turn_p50_ms=None, assembled_at=now
            )
        )

    with runtime.sessions.begin() as session:
        calls, answered, turns = agents.quality(session, now, top=0)

    assert [(s.labels, s.value) for s in calls.samples] == [({"agent": "other"}, 1)]
    assert [(s.labels, s.value) for s in answered.samples] == [({"agent": "other"}, 0)]
    assert turns.samples == []
