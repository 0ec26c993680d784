"""fixa: an analysis enriches another source's call, before or after that call arrives."""

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from callwatch.calls.fold import fold
from callwatch.model.events import CallEvent
from callwatch.model.records import CallDetails
from callwatch.providers.base import WebhookRequest
from callwatch.providers.fixa import FixaProvider
from callwatch.providers.generic import GenericProvider
from callwatch.runtime import Runtime
from callwatch.tables import PendingJoin
from tests.conftest import create_org, create_source, path_of, signed
from tests.factories import assembled_record, webhook_request

PAYLOADS = Path(__file__).parent.parent / "payloads" / "fixa"
ANALYSED_AT = datetime(2026, 3, 2, 18, 22, 41, tzinfo=UTC)
CALL_ID = "gen-call-0001"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def request(body: Any, received_at: datetime = ANALYSED_AT) -> WebhookRequest:
    return webhook_request(json.dumps(body).encode(), received_at)


def call_events() -> list[CallEvent]:
    return [
        event
        for body in payload("call_events")
        for event in GenericProvider().parse(request(body), None)
    ]


def analysis_event(body: Any = None) -> CallEvent:
    [event] = FixaProvider().parse(request(payload("analysis") if body is None else body), None)
    return event


def record_from(events: list[CallEvent]) -> dict[str, Any]:
    state = fold([(f"evt_{index}", event) for index, event in enumerate(events)])
    # A generic source without a detail URL: the completion event's data is the detail.
    details = CallDetails.model_validate(state.completion)
    return assembled_record(
        state, details, provider="generic", source="gen", provider_call_id=CALL_ID, at=ANALYSED_AT
    )


def test_the_analysis_gives_the_expected_record() -> None:
    assert record_from([*call_events(), analysis_event()]) == payload("expected_record")


def test_fixas_measurements_replace_the_platforms_and_keep_the_rest() -> None:
    without = record_from(call_events())
    enriched = record_from([*call_events(), analysis_event()])

    assert (without["latency"]["turn"]["p50"], enriched["latency"]["turn"]["p50"]) == (800.0, 930)
    assert enriched["latency"]["llm"] == without["latency"]["llm"]
    assert enriched["transcript"] == without["transcript"]
    assert enriched["recording"] == without["recording"]


def test_the_analysis_joins_by_customer_and_vapi_call_ids() -> None:
    body = payload("analysis")
    body["call"]["vapiCallId"] = "0b1f5c3e-vapi"

    event = analysis_event(body)

    assert (event.joins, event.status, event.provider_call_id) == (
        [CALL_ID, "0b1f5c3e-vapi"],
        None,
        CALL_ID,
    )


# ----------------------------------------------------------------- through the worker


def post_call(client: TestClient, source: dict[str, Any], call_id: str = CALL_ID) -> None:
    for body in payload("call_events"):
        body["data"]["call_id"] = call_id
        raw = json.dumps(body).encode()
        response = client.post(
            path_of(source["webhook_url"]),
            content=raw,
            headers=signed(source["webhook_secret"], raw),
        )
        assert response.status_code == 202, response.text


def post_analysis(client: TestClient, source: dict[str, Any], call_id: str = CALL_ID) -> Any:
    body = payload("analysis")
    body["call"]["customerCallId"] = call_id
    return client.post(
        path_of(source["webhook_url"]),
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )


def sources(client: TestClient, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return create_source(client, key, name="gen"), create_source(
        client, key, name="fixa", provider="fixa"
    )


def analysed(client: TestClient, key: str, call_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = client.get(f"/api/calls/{call_id}", headers={"authorization": f"Bearer {key}"})
        record: dict[str, Any] = response.json()
        done = response.status_code == 200 and record["assembly"]["state"] == "assembled"
        if done and record["evaluations"]:
            return record
        time.sleep(0.1)
    raise AssertionError(f"{call_id} was not assembled with fixa's analysis")


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    volatile = ("id", "provider_call_id", "timeline", "assembly", "updated_at", "recording")
    return {key: value for key, value in record.items() if key not in volatile}


def wait_until_known(client: TestClient, key: str, call_id: str) -> None:
    deadline = time.monotonic() + 10
    headers = {"authorization": f"Bearer {key}"}
    while client.get(f"/api/calls/{call_id}", headers=headers).status_code != 200:
        assert time.monotonic() < deadline, f"{call_id} was not applied"
        time.sleep(0.05)


def parked(runtime: Runtime) -> list[str]:
    with runtime.sessions() as session:
        return list(session.scalars(select(PendingJoin.join_key)))


def test_enrichment_before_and_after_the_call_gives_the_same_record(
    client: TestClient, runtime: Runtime, worker: None
) -> None:
    key = create_org(client)
    generic, fixa = sources(client, key)

    post_call(client, generic, "call-first")
    wait_until_known(client, key, "call-first")
    post_analysis(client, fixa, "call-first")
    assert post_analysis(client, fixa, "analysis-first").status_code == 202
    deadline = time.monotonic() + 10
    while parked(runtime) != ["analysis-first"] and time.monotonic() < deadline:
        time.sleep(0.05)  # applied, it finds no call and waits for one
    assert parked(runtime) == ["analysis-first"]
    post_call(client, generic, "analysis-first")

    after, before = analysed(client, key, "call-first"), analysed(client, key, "analysis-first")
    assert comparable(after) == comparable(before)
    assert parked(runtime) == []
    assert (after["latency"]["turn"]["p95"], after["metadata"]["fixa"]["result"]) == (
        1640,
        "failure",
    )
    assert [entry["event"] for entry in before["timeline"]] == [
        "call.status_changed",
        "call.status_changed",
        "call.completed",
        "fixa.analysis",
    ]


def test_an_analysis_never_joins_another_orgs_call(
    client: TestClient, runtime: Runtime, worker: None
) -> None:
    owner = create_org(client, "owner")
    generic, _ = sources(client, owner)
    _, other_fixa = sources(client, create_org(client, "other"))
    post_call(client, generic)
    assert post_analysis(client, other_fixa).status_code == 202
    deadline = time.monotonic() + 10
    while parked(runtime) != [CALL_ID] and time.monotonic() < deadline:
        time.sleep(0.05)  # the other org's analysis finds no call of its org and waits

    response = client.get(f"/api/calls/{CALL_ID}", headers={"authorization": f"Bearer {owner}"})
    record = response.json()
    assert (parked(runtime), record["evaluations"], record["metadata"]) == ([CALL_ID], None, {})


def test_unsigned_a_wrong_token_is_404_and_a_disallowed_address_401(client: TestClient) -> None:
    key = create_org(client)
    _, fixa = sources(client, key)
    fenced = create_source(
        client, key, name="fenced", provider="fixa", settings={"allowed_ips": ["10.1.2.3"]}
    )

    assert [
        post_analysis(client, fixa).status_code,
        post_analysis(client, {"webhook_url": "x/whk_unknown"}).status_code,
        post_analysis(client, fenced).status_code,
    ] == [202, 404, 401]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"success": True, "url": "https://fixa.dev/observe/x"}, 422, "call"),
        ({"success": True, "call": {"id": "c1"}}, 422, "call.customerCallId"),
        ({"call": {"id": "c1", "customerCallId": "x", "latencyBlocks": [{}]}}, 422, None),
    ],
)
def test_malformed_analyses_are_a_clear_4xx(
    client: TestClient, body: Any, status: int, field: str | None
) -> None:
    _, fixa = sources(client, create_org(client))

    response = client.post(
        path_of(fixa["webhook_url"]),
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )

    assert response.status_code == status
    if field is not None:
        assert response.json()["field"] == field


def test_a_parsed_analysis_arrives_when_received() -> None:
    later = ANALYSED_AT + timedelta(minutes=5)
    [event] = FixaProvider().parse(request(payload("analysis"), later), None)

    assert event.at == later
