"""A call's record is a function of the set of its events, not of the order they arrive in."""

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from starlette.testclient import TestClient

from callwatch.calls.fold import fold
from callwatch.model.events import CallEvent
from callwatch.model.records import CallDetails
from callwatch.providers.fixa import FixaProvider
from callwatch.providers.vapi.provider import VapiProvider
from callwatch.runtime import Runtime
from callwatch.simulator import DetailServer, make_call
from callwatch.simulator.platforms import PLATFORMS
from callwatch.tables import Call, InboxEvent, PendingJoin
from tests.conftest import create_org
from tests.factories import assembled_record, webhook_request
from tests.simulated_calls import (
    ALL_PLATFORMS,
    deliveries,
    played,
    pure_record,
    simulated_call,
    source_config,
)

PAYLOADS = Path(__file__).parent.parent / "payloads"
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

# What a record legitimately takes from processing: callwatch's ids and clock, the assembly's
# progress, and the moment a recording was found when the platform does not say.
PROCESSING = frozenset({"id", "org_id", "updated_at", "assembly"})
# What a platform that does not time (some of) its webhooks leaves to our clock on arrival: the
# timeline's times (its entries are then compared as a multiset), and the call's creation when
# its first event is one of those.
ARRIVAL_TIMED: dict[str, frozenset[str]] = {
    "atoms": frozenset({"timeline", "created_at"}),
    "burki": frozenset({"timeline", "created_at"}),
    "fixa": frozenset({"timeline"}),
    "fixa:vapi": frozenset({"timeline"}),
    "twilio": frozenset({"timeline"}),
    "retell": frozenset({"timeline"}),
}


def comparable(scenario: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record but for what depends on processing, or on arrival for this scenario."""
    arrival_timed = ARRIVAL_TIMED.get(scenario, frozenset())
    kept = {key: value for key, value in record.items() if key not in PROCESSING | arrival_timed}
    # The archive is the worker's copy of the file, made after the record: processing too.
    kept["recording"] = {
        k: v for k, v in record["recording"].items() if k not in ("available_at", "archive")
    }
    if "timeline" in arrival_timed:
        kept["timeline"] = sorted(
            (entry["status"] or "", entry["event"]) for entry in record["timeline"]
        )
    return kept


TOKENS = {name: f"tok_{name}" for name in PLATFORMS}


@pytest.mark.parametrize("scenario", ALL_PLATFORMS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_any_order_with_duplicates_gives_the_same_record(
    scenario: str, data: st.DataObject
) -> None:
    """Whatever order a call's webhooks are processed in, repeats included, the record is the
    same. Each is received up to 15 minutes before or after it was sent (our clock and the
    platform's disagree, deliveries are late: an analysis or a recording callback may be in
    before the call's other events), then processed in any order: the record is exactly that
    of the same webhooks processed as they were received, and, but for what the platform leaves
    to our clock on arrival, that of the webhooks received as they were sent."""
    call = simulated_call(data.draw(st.integers(0, 2**32), label="seed"))
    schedule = deliveries(scenario, call, TOKENS)
    assume(schedule)  # Burki and fixa send nothing about a call that never connected
    count = len(schedule)
    offsets = st.lists(st.integers(-900, 900), min_size=count, max_size=count)
    delays = data.draw(offsets, label="offsets")
    received = [d.sent_at + timedelta(seconds=s) for d, s in zip(schedule, delays, strict=True)]
    arrival = sorted(range(count), key=lambda index: received[index])
    repeats = data.draw(st.lists(st.integers(0, count - 1), max_size=3), label="repeats")
    order = data.draw(st.permutations([*range(count), *repeats]), label="order")

    got = pure_record(scenario, call, schedule, order, [received[i] for i in order])
    assert got == pure_record(scenario, call, schedule, arrival, [received[i] for i in arrival])
    on_time = pure_record(scenario, call, schedule, range(count), [d.sent_at for d in schedule])
    assert comparable(scenario, got) == comparable(scenario, on_time)


# ---------------------------------------------------------------- the property, real path


def _sources(client: TestClient, key: str, api: DetailServer, scenario: str) -> dict[str, str]:
    """The org's sources for the scenario's platforms: name → webhook URL token."""
    tokens = {}
    for name in played(scenario):
        config = source_config(name, api.url)
        if name == "generic":
            config.settings["detail_url"] = api.detail_url
        body = {
            "name": name,
            "provider": name,
            "settings": config.settings,
            "credentials": {k: v for k, v in config.credentials.items() if k != "public_key"},
        }
        made = client.post("/api/sources", json=body, headers={"authorization": f"Bearer {key}"})
        assert made.status_code == 201, made.text
        tokens[name] = made.json()["webhook_url"].rsplit("/", 1)[1]
    return tokens


def _applied(runtime: Runtime) -> bool:
    """Every webhook received so far applied, but those that name no call and wait for one."""
    with runtime.sessions() as session:
        waiting = session.scalar(
            select(func.count())
            .select_from(InboxEvent)
            .where(InboxEvent.processed_at.is_(None), InboxEvent.provider_call_id != "")
        )
    return waiting == 0


def _settled(runtime: Runtime) -> bool:
    """Every webhook applied, no analysis waiting for its call, every call assembled."""
    with runtime.sessions() as session:
        waiting = session.scalar(
            select(func.count()).select_from(InboxEvent).where(InboxEvent.processed_at.is_(None))
        )
        parked = session.scalar(select(func.count()).select_from(PendingJoin))
        unfinished = session.scalar(
            select(func.count()).select_from(Call).where(Call.assembly_state != "assembled")
        )
    return waiting == parked == unfinished == 0


SCENARIOS = [
    (scenario, answered)
    for scenario in ALL_PLATFORMS
    for answered in (True, False)
    # Burki and fixa send nothing about a call that never connected.
    if answered or scenario.partition(":")[0] not in ("burki", "fixa")
]


@pytest.mark.parametrize(("scenario", "answered"), SCENARIOS)
def test_any_order_with_duplicates_stores_the_same_record(
    client: TestClient, runtime: Runtime, worker: None, scenario: str, answered: bool
) -> None:
    """Through intake, the database and a real worker: the call's webhooks in their sending
    order, reversed, and twice shuffled with repeats, each into an org of its own and each
    applied before the next is sent; the stored records are the same, and the pure core's."""
    from workers.tasks import sweep

    rng = random.Random(f"{scenario}-{answered}")
    with DetailServer() as api:
        while True:
            call = make_call(rng, datetime.now(UTC), recording_base=api.url)
            if (call.answered_at is not None) == answered:
                break
        api.add(call, recording_after_s=0)
        count = len(deliveries(scenario, call, TOKENS))
        shuffled = [[*range(count), *rng.choices(range(count), k=2)] for _ in range(2)]
        for order in shuffled:
            rng.shuffle(order)
        orders = [list(range(count)), list(reversed(range(count))), *shuffled]
        keys = []
        for number, order in enumerate(orders):
            key = create_org(client, f"org-{number}")
            tokens = _sources(client, key, api, scenario)
            schedule = deliveries(scenario, call, tokens, signed_at=time.time())
            for index in order:
                sent = schedule[index]
                posted = client.post(
                    f"/webhooks/{sent.token}", content=sent.body, headers=sent.headers
                )
                assert posted.status_code in (200, 202), posted.text
                # Applied before the next one is sent: the worker sees them in this order
                # (an assembly started by a hangup fetches with only the events before it).
                deadline = time.monotonic() + 10
                while not _applied(runtime):
                    assert time.monotonic() < deadline, "a webhook was not applied"
                    time.sleep(0.02)
            keys.append(key)
        deadline = time.monotonic() + 60
        while not _settled(runtime):
            assert time.monotonic() < deadline, "the calls were not all assembled"
            sweep.delay()  # a report that names no call waits for the sweeper to look again
            time.sleep(0.3)
        records = []
        for key in keys:
            headers = {"authorization": f"Bearer {key}"}
            [listed] = client.get("/api/calls", headers=headers).json()["items"]
            records.append(client.get(f"/api/calls/{listed['id']}", headers=headers).json())
        schedule = deliveries(scenario, call, TOKENS)
        pure = pure_record(
            scenario, call, schedule, range(count), [d.sent_at for d in schedule], api_base=api.url
        )

    assert [comparable(scenario, record) for record in records] == [comparable(scenario, pure)] * 4
