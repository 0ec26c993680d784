"""A call's record is a function of the set of its events, not of the order they arrive in."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from callwatch.events import CallEvent
from callwatch.providers.fixa import FixaProvider
from callwatch.providers.vapi import VapiProvider
from callwatch.records import CallDetails
from callwatch.simulator.platforms import PLATFORMS
from callwatch.state import fold
from tests.factories import assembled_record, webhook_request
from tests.simulated_calls import ALL_PLATFORMS, deliveries, pure_record, simulated_call

PAYLOADS = Path(__file__).parent / "payloads"
REPORTED_AT = datetime.fromtimestamp(1775121402.3, UTC)  # the Vapi report's own timestamp


def payload(path: str) -> Any:
    return json.loads((PAYLOADS / f"{path}.json").read_text())


def vapi_report() -> CallEvent:
    body = json.dumps(payload("vapi/end_of_call_report")).encode()
    [event] = VapiProvider().parse(webhook_request(body, REPORTED_AT), None)
    return event


def fixa_analysis_of(call_id: str, received_at: datetime) -> CallEvent:
    body = payload("fixa/analysis")
    body["call"] |= {"customerCallId": None, "vapiCallId": call_id}
    [event] = FixaProvider().parse(webhook_request(json.dumps(body).encode(), received_at), None)
    return event


def vapi_record(events: list[CallEvent]) -> dict[str, Any]:
    state = fold([(f"evt_{index}", event) for index, event in enumerate(events)])
    return assembled_record(
        state,
        CallDetails.model_validate(state.completion),
        provider="vapi",
        source="vapi",
        provider_call_id=events[0].provider_call_id,
        at=REPORTED_AT + timedelta(hours=1),
    )


def test_a_fixa_analysis_before_its_call_wins_over_the_platforms_latency_as_after_it() -> None:
    report = vapi_report()
    before = vapi_record(
        [report, fixa_analysis_of(report.provider_call_id, REPORTED_AT - timedelta(minutes=5))]
    )
    after = vapi_record(
        [report, fixa_analysis_of(report.provider_call_id, REPORTED_AT + timedelta(minutes=5))]
    )

    timeless = {key: value for key, value in before.items() if key != "timeline"}
    assert timeless == {key: value for key, value in after.items() if key != "timeline"}
    assert (before["latency"]["turn"]["p50"], before["latency"]["turn"]["p90"]) == (930, 1640)
    assert before["created_at"] == after["created_at"] == vapi_record([report])["created_at"]


# ---------------------------------------------------------------- the property, pure core

TOKENS = {name: f"tok_{name}" for name in PLATFORMS}


@pytest.mark.parametrize("platform", ALL_PLATFORMS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_any_order_with_duplicates_gives_the_same_record(
    platform: str, data: st.DataObject
) -> None:
    """Whatever order a call's webhooks are processed in, repeats included, the record is the
    same: here each webhook is received some time after it was sent (so an analysis or a
    recording callback may be in before the call's other events), then processed in any order."""
    call = simulated_call(data.draw(st.integers(0, 2**32), label="seed"))
    schedule = deliveries(platform, call, TOKENS)
    assume(schedule)  # Burki and fixa send nothing about a call that never connected
    count = len(schedule)
    delays = data.draw(st.lists(st.integers(0, 900), min_size=count, max_size=count), "delays")
    received = [d.sent_at + timedelta(seconds=s) for d, s in zip(schedule, delays, strict=True)]
    arrival = sorted(range(count), key=lambda index: received[index])
    repeats = data.draw(st.lists(st.integers(0, count - 1), max_size=3), label="repeats")
    order = data.draw(st.permutations([*range(count), *repeats]), label="order")

    expected = pure_record(platform, call, schedule, arrival, [received[i] for i in arrival])
    assert pure_record(platform, call, schedule, order, [received[i] for i in order]) == expected
