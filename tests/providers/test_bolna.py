"""Bolna: one execution posted per status, to one record in any order; unsigned; end to end."""

import itertools
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from callwatch.calls.fold import fold
from callwatch.errors import ProviderRejected
from callwatch.model.events import CallStatus
from callwatch.model.records import CallDetails, Cost, Recording, Utterance
from callwatch.providers.base import FetchContext, SourceConfig
from callwatch.providers.bolna.details import (
    Execution,
    details_of,
    end_reason_of,
    status_of,
    transcript_of,
)
from callwatch.providers.bolna.provider import BolnaProvider
from callwatch.simulator import BackgroundServer
from tests.conftest import create_org
from tests.factories import assembled_record, post_unsigned, webhook_request

PAYLOADS = Path(__file__).parent.parent / "payloads" / "bolna"
RECEIVED = datetime(2026, 7, 14, 10, 5, 40, tzinfo=UTC)
EXECUTION_ID = "4c06b4d1-4096-4561-919a-4f94539c8d4a"
STATUSES = ("queued", "initiated", "ringing", "in_progress", "call_disconnected", "completed")
API_KEY = "bn-api-key"
BOLNA_IPS = ["13.203.39.153", "13.126.9.249", "13.202.133.53"]


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def parsed(body: Any) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    [event] = BolnaProvider().parse(webhook_request(content, RECEIVED), None)
    return event


def record_from(bodies: list[Any], details: CallDetails | None) -> dict[str, Any]:
    state = fold([(f"evt_{index}", parsed(body)) for index, body in enumerate(bodies)])
    if details is None:
        details = CallDetails.model_validate(state.completion)
    return assembled_record(
        state,
        details,
        provider="bolna",
        source="bolna-prod",
        provider_call_id=EXECUTION_ID,
        at=RECEIVED,
    )


def source_config(**credentials: str) -> SourceConfig:
    return SourceConfig("src_1", "org_1", "bolna-prod", "bolna", {}, credentials)


def fetched(execution: Any, **credentials: str) -> tuple[CallDetails, list[str]]:
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url} {request.headers.get('authorization')}")
        return httpx.Response(200, json=execution)

    completion = parsed(payload("call_disconnected")).detail
    with httpx.Client(transport=httpx.MockTransport(api)) as client:
        details = BolnaProvider().fetch(
            client, source_config(**credentials), FetchContext(EXECUTION_ID, completion)
        )
    return details, seen


# ----------------------------------------------------------------- recorded payloads


def test_recorded_payloads_give_the_expected_record() -> None:
    details, seen = fetched(payload("execution"), api_key=API_KEY)

    assert record_from([payload(name) for name in STATUSES], details) == payload("expected_record")
    assert seen == [f"https://api.bolna.ai/executions/{EXECUTION_ID} Bearer {API_KEY}"]


def test_the_webhooks_alone_give_the_same_record() -> None:
    details, seen = fetched(payload("execution"))

    assert (record_from([payload(name) for name in STATUSES], details), seen) == (
        payload("expected_record"),
        [],
    )


def test_any_arrival_order_and_repeats_give_one_record() -> None:
    bodies = [payload(name) for name in STATUSES]
    expected = payload("expected_record")
    orders = list(itertools.permutations(bodies))[::37]
    completed_first = [bodies[5], bodies[4], *bodies[:4]]

    records = [record_from(list(order), None) for order in [*orders, completed_first]]

    assert len(orders) > 15
    assert all(record == expected for record in records)


def test_the_dedupe_key_is_execution_status_and_update_time() -> None:
    again = parsed(payload("in_progress"))
    later = payload("in_progress") | {"updated_at": "2026-07-14T10:02:22.001000Z"}
    keys = [parsed(payload(name)).dedupe_key for name in STATUSES]

    assert again.dedupe_key == keys[3]
    assert parsed(later).dedupe_key not in keys
    assert len(set(keys)) == len(keys)


def test_a_repeated_later_status_is_in_the_timeline_and_changes_nothing_else() -> None:
    bodies = [payload(name) for name in STATUSES]
    repeat = payload("in_progress") | {"updated_at": "2026-07-14T10:02:30.000000Z"}

    record = record_from([*bodies, repeat], None)

    assert [entry["event"] for entry in record["timeline"]] == [
        "queued",
        "initiated",
        "ringing",
        "in-progress",
        "in-progress",
        "call-disconnected",
        "completed",
    ]
    assert {k: v for k, v in record.items() if k != "timeline"} == {
        k: v for k, v in payload("expected_record").items() if k != "timeline"
    }


def test_before_completed_the_placeholder_figures_are_left_out() -> None:
    details = details_of(Execution.model_validate(payload("call_disconnected")))

    assert (details.status, details.duration_s, details.cost, details.transcript) == (
        CallStatus.completed,
        None,
        None,
        None,
    )
    assert (details.recording, details.analysis, details.end_reason) == (
        Recording(status="pending"),
        None,
        "user_hangup",
    )


@pytest.mark.parametrize(
    ("change", "recording"),
    [
        ({"status": "call-disconnected"}, Recording(status="pending")),
        ({"status": "in-progress"}, Recording(status="pending")),
        (
            {"telephony_data": dict(payload("execution")["telephony_data"], recording_url=None)},
            Recording(status="missing"),
        ),
        ({"status": "no-answer", "conversation_duration": 0}, None),
    ],
)
def test_the_api_keeps_the_recording_pending_until_completed(
    change: dict[str, Any], recording: Recording | None
) -> None:
    details, _ = fetched(payload("execution") | change, api_key=API_KEY)

    assert details.recording == recording


def test_an_execution_that_is_not_one_is_rejected() -> None:
    with pytest.raises(ProviderRejected):
        fetched({"detail": "not found"}, api_key=API_KEY)


@pytest.mark.parametrize(
    ("status", "call_status", "terminal"),
    [
        ("scheduled", CallStatus.queued, False),
        ("queued", CallStatus.queued, False),
        ("rescheduled", CallStatus.queued, False),
        ("initiated", CallStatus.initiated, False),
        ("ringing", CallStatus.ringing, False),
        ("in-progress", CallStatus.in_progress, False),
        ("call-disconnected", CallStatus.completed, True),
        ("completed", CallStatus.completed, True),
        ("busy", CallStatus.busy, True),
        ("no-answer", CallStatus.no_answer, True),
        ("balance-low", CallStatus.failed, True),
        ("canceled", CallStatus.canceled, True),
        ("stopped", CallStatus.canceled, True),
        ("failed", CallStatus.failed, True),
        ("error", CallStatus.failed, True),
    ],
)
def test_every_documented_status(status: str, call_status: CallStatus, terminal: bool) -> None:
    event = parsed(payload("completed") | {"status": status})

    assert (event.status, event.terminal, event.type) == (call_status, terminal, status)


def no_conversation(**telephony: Any) -> Execution:
    body = payload("completed")
    body |= {"conversation_duration": 0, "transcript": "", "total_cost": 1.1}
    body["telephony_data"] |= {"recording_url": None, **telephony}
    return Execution.model_validate(body)


@pytest.mark.parametrize(
    ("hangup_reason", "status"),
    [
        ("Call Rejected", CallStatus.busy),
        ("Busy Line", CallStatus.busy),
        ("No Answer", CallStatus.no_answer),
        (None, CallStatus.no_answer),
        ("Cancelled", CallStatus.canceled),
        ("Service Unavailable Error", CallStatus.failed),
    ],
)
def test_completed_without_a_conversation_was_not_answered(
    hangup_reason: str | None, status: CallStatus
) -> None:
    execution = no_conversation(hangup_reason=hangup_reason, hangup_by="Carrier")
    details = details_of(execution)

    assert (status_of(execution), details.end_reason, details.recording) == (
        status,
        {"busy": "busy", "no_answer": "no_answer", "canceled": "other", "failed": "error"}[status],
        Recording(status="missing"),
    )


def test_a_voicemail_is_a_completed_call_that_ended_in_voicemail() -> None:
    execution = no_conversation(hangup_reason="Normal Hangup")
    voicemail = execution.model_copy(update={"answered_by_voice_mail": True})

    assert (status_of(voicemail), end_reason_of(voicemail, CallStatus.completed)) == (
        CallStatus.completed,
        "voicemail",
    )


@pytest.mark.parametrize(
    ("hangup_by", "hangup_reason", "call_type", "transfer", "end_reason"),
    [
        ("Callee", "Normal Hangup", "outbound", None, "user_hangup"),
        ("Caller", "Normal Hangup", "outbound", None, "agent_hangup"),
        ("Caller", "Normal Hangup", "inbound", None, "user_hangup"),
        ("Callee", "Normal Hangup", "inbound", None, "agent_hangup"),
        ("Callee", "Normal Hangup", None, None, None),
        ("API Request", "Normal Hangup", "outbound", None, "agent_hangup"),
        ("API Request", "inactivity_timeout", "outbound", None, "timeout"),
        ("API Request", "llm_prompted_hangup", "inbound", None, "agent_hangup"),
        ("Carrier", "Normal Hangup", "outbound", None, "other"),
        ("Plivo", "Normal Hangup", "outbound", None, "other"),
        ("Error", "Normal Hangup", "outbound", None, "error"),
        ("Unknown", "Normal Hangup", "outbound", None, None),
        ("Callee", "Normal Hangup", "outbound", {"status": "completed"}, "transferred"),
    ],
)
def test_end_reasons(
    hangup_by: str,
    hangup_reason: str,
    call_type: str | None,
    transfer: dict[str, Any] | None,
    end_reason: str | None,
) -> None:
    body = payload("completed") | {"transfer_call_data": transfer}
    body["telephony_data"] |= {
        "hangup_by": hangup_by,
        "hangup_reason": hangup_reason,
        "call_type": call_type,
    }

    assert details_of(Execution.model_validate(body)).end_reason == end_reason


def test_the_transcript_text_becomes_utterances() -> None:
    text = "preamble without a speaker\nAgent: Hi there\n  and welcome\n\nUSER:hello\nbot: ok"

    assert transcript_of(text) == [
        Utterance(role="assistant", content="Hi there\nand welcome"),
        Utterance(role="user", content="hello"),
        Utterance(role="assistant", content="ok"),
    ]
    assert transcript_of("") is None


def test_costs_are_cents_converted_to_dollars() -> None:
    details = details_of(Execution.model_validate(payload("completed")))

    assert details.cost == Cost(
        total=0.083,
        currency="USD",
        llm=0.021,
        stt=0.006,
        tts=0.024,
        telephony=0.012,
        platform=0.02,
    )


def test_old_integer_execution_ids_are_text() -> None:
    event = parsed(payload("queued") | {"id": 7432382142914})

    assert event.provider_call_id == "7432382142914"


# ----------------------------------------------------------------- through the receiver


def bolna_source(
    client: TestClient, key: str, name: str = "bolna-prod", **settings: Any
) -> dict[str, Any]:
    credentials = {"api_key": API_KEY} if "api_base_url" in settings else {}
    response = client.post(
        "/api/sources",
        json={"name": name, "provider": "bolna", "settings": settings, "credentials": credentials},
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()
    return source


def test_unsigned_a_wrong_token_is_404_and_a_disallowed_address_401(client: TestClient) -> None:
    key = create_org(client)
    fenced = bolna_source(client, key, "fenced", allowed_ips=BOLNA_IPS)
    nearby = bolna_source(client, key, "from-the-sender", allowed_ips=["192.0.2.0/24"])
    # The same app (started by `client`), reached from a real address.
    sender = TestClient(client.app, raise_server_exceptions=False, client=("192.0.2.10", 50000))
    body = payload("queued")

    assert [
        post_unsigned(sender, {"webhook_url": "x/not-a-token"}, body).status_code,
        post_unsigned(sender, fenced, body).status_code,
        post_unsigned(sender, nearby, body).status_code,
    ] == [404, 401, 202]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        (b"[]", 422, None),
        ({"status": "queued"}, 422, "id"),
        ({"id": "e-1"}, 422, "status"),
        ({"id": "e-1", "status": "dialling"}, 422, "status"),
        ({"id": "e-1", "status": "queued", "updated_at": "yesterday"}, 422, "updated_at"),
    ],
)
def test_malformed_bodies_are_a_clear_4xx(
    client: TestClient, body: Any, status: int, field: str | None
) -> None:
    source = bolna_source(client, create_org(client))

    response = post_unsigned(client, source, body)

    assert (response.status_code, response.json().get("field")) == (status, field)


class BolnaApi(BackgroundServer):
    """`GET /executions/{id}` on loopback: still `call-disconnected` for the first `processing`
    requests (Bolna's post-processing), then `completed`."""

    def __init__(self, *, processing: int) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self._processing = processing
        super().__init__(Starlette(routes=[Route("/executions/{execution_id}", self._get)]))

    async def _get(self, request: Request) -> JSONResponse:
        self.requests.append(
            (request.path_params["execution_id"], request.headers.get("authorization"))
        )
        if len(self.requests) <= self._processing:
            return JSONResponse(payload("call_disconnected"))
        return JSONResponse(payload("execution"))


VOLATILE = ("id", "org_id", "assembly", "updated_at")


def record_of(client: TestClient, key: str) -> Any:
    response = client.get(f"/api/calls/{EXECUTION_ID}", headers={"authorization": f"Bearer {key}"})
    return response.json() if response.status_code == 200 else None


def wait_until(client: TestClient, key: str, done: Any) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = record_of(client, key)
        if record is not None and done(record):
            return record
        time.sleep(0.1)
    raise AssertionError(f"{EXECUTION_ID}: {record_of(client, key)}")


def assembled(record: Any) -> bool:
    return bool(record["assembly"]["state"] == "assembled")


def same_as_expected(record: Any, *leave_out: str) -> dict[str, Any]:
    skip = (*VOLATILE, *leave_out)
    return {
        "got": {k: v for k, v in record.items() if k not in skip},
        "want": {k: v for k, v in payload("expected_record").items() if k not in skip},
    }


def test_end_to_end_the_api_is_read_until_the_execution_is_completed(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)
    with BolnaApi(processing=2) as api:
        source = bolna_source(client, key, api_base_url=api.url)
        for name in STATUSES[:-1]:
            assert post_unsigned(client, source, payload(name)).status_code == 202
        record = wait_until(client, key, lambda r: assembled(r) and len(r["timeline"]) == 5)
        late = post_unsigned(client, source, payload("completed"))
        with_late = wait_until(client, key, lambda r: len(r["timeline"]) == 6)

    compared = same_as_expected(record, "timeline")
    assert compared["got"] == compared["want"]
    unchanged = ("timeline", "updated_at", "assembly")
    assert late.status_code == 202
    assert {k: v for k, v in with_late.items() if k not in unchanged} == {
        k: v for k, v in record.items() if k not in unchanged
    }
    assert with_late["timeline"] == payload("expected_record")["timeline"]
    assert api.requests == [(EXECUTION_ID, f"Bearer {API_KEY}")] * 3


def test_end_to_end_out_of_order_and_repeated_webhooks_make_one_record(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)
    source = bolna_source(client, key)
    arrival = ["completed", "ringing", "completed", "call_disconnected", "queued", "in_progress"]
    arrival += ["initiated", "in_progress"]

    replies = [post_unsigned(client, source, payload(name)).json()["status"] for name in arrival]
    record = wait_until(client, key, lambda r: assembled(r) and len(r["timeline"]) == 6)
    listed = client.get("/api/calls", headers={"authorization": f"Bearer {key}"}).json()

    assert replies == ["accepted"] * 2 + ["duplicate"] + ["accepted"] * 4 + ["duplicate"]
    assert [item["provider_call_id"] for item in listed["items"]] == [EXECUTION_ID]
    compared = same_as_expected(record)
    assert compared["got"] == compared["want"]


def test_end_to_end_a_completed_after_assembly_still_lands(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)
    source = bolna_source(client, key)
    for name in STATUSES[:-1]:
        assert post_unsigned(client, source, payload(name)).status_code == 202
    before = wait_until(client, key, lambda r: assembled(r) and len(r["timeline"]) == 5)

    assert post_unsigned(client, source, payload("completed")).status_code == 202
    after = wait_until(client, key, lambda r: r["cost"] is not None)

    # The recording wait (2 s here) ran out before `completed` came; then it brought it all.
    assert (
        before["cost"],
        before["transcript"],
        before["duration_s"],
        before["recording"]["status"],
    ) == (None, None, 42.248, "missing")
    compared = same_as_expected(after)
    assert compared["got"] == compared["want"]
