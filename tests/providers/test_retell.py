"""Retell AI: retell-sdk's signatures both ways, recorded payloads to the exact record, late
analyses, and end to end through the worker."""

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from retell.lib.webhook_auth import symmetric, verify
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from callwatch.calls.fold import fold
from callwatch.model.events import CallStatus
from callwatch.model.records import CallDetails, Cost, Recording, Stats
from callwatch.providers.base import WebhookRequest
from callwatch.providers.retell.call import RetellCall
from callwatch.providers.retell.details import call_details, product_component
from callwatch.providers.retell.provider import RetellProvider
from callwatch.settings import Settings
from callwatch.simulator import BackgroundServer
from callwatch.simulator import retell as simulated
from tests.conftest import create_org, path_of
from tests.factories import assembled_record, in_state, wait_for_call, webhook_request

PAYLOADS = Path(__file__).parent.parent / "payloads" / "retell"
CALL_ID = "call_4f1c2a9e8b7d6c5e3a2f1b0c9d8"
STARTED = datetime(2026, 3, 12, 15, 4, 5, 250000, tzinfo=UTC)
WEBHOOKS = ("call_started", "call_ended", "call_analyzed")
# When each webhook arrives: at the answer, at hangup, and when the analysis is done.
ARRIVALS = {"call_started": 0.3, "call_ended": 97.0, "call_analyzed": 131.0}
API_KEY = "key_3c9f1e0a7b2d4c6e8f0a1b2c3d4e"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def request(body: bytes, after_s: float = 0) -> WebhookRequest:
    return webhook_request(body, STARTED + timedelta(seconds=after_s))


def parsed(name: str, body: Any = None) -> Any:
    given = payload(name) if body is None else body
    [event] = RetellProvider().parse(request(json.dumps(given).encode(), ARRIVALS[name]), None)
    return event


def record_from(names: tuple[str, ...], get_call: dict[str, Any] | None) -> dict[str, Any]:
    """The record the pipeline builds from these webhooks and this get-call answer."""
    state = fold([(f"evt_{index}", parsed(name)) for index, name in enumerate(names)])
    details = (
        call_details(RetellCall.model_validate(get_call))
        if get_call
        else CallDetails.model_validate(state.completion)
    )
    return assembled_record(
        state,
        details,
        provider="retell",
        source="retell-prod",
        provider_call_id=CALL_ID,
        at=STARTED + timedelta(seconds=100),
    )


def test_recorded_payloads_give_the_expected_record() -> None:
    assert record_from(WEBHOOKS, payload("get_call")) == payload("expected_record")


def test_the_webhooks_alone_give_the_same_record_without_an_api() -> None:
    """call_ended carries the whole call: it is the detail when get-call is not read."""
    assert record_from(WEBHOOKS, None) == payload("expected_record")


def test_an_analysis_after_the_call_changes_only_the_analysis() -> None:
    without = record_from(WEBHOOKS[:2], payload("get_call"))
    with_analysis = record_from(WEBHOOKS, payload("get_call"))

    assert without["analysis"] is None
    assert with_analysis["analysis"] == {
        "summary": "Dana moved her cleaning to Thursday at 2pm.",
        "success": True,
        "sentiment": "positive",
        "data": {"appointment_booked": True, "preferred_day": "Thursday"},
    }
    assert {k: v for k, v in with_analysis.items() if k not in ("analysis", "timeline")} == {
        k: v for k, v in without.items() if k not in ("analysis", "timeline")
    }


def test_each_webhook_becomes_one_event_at_its_own_time() -> None:
    events = [parsed(name) for name in WEBHOOKS]

    assert [
        (event.type, event.status, event.at, event.terminal, event.dedupe_key.split(":")[:2])
        for event in events
    ] == [
        ("call_started", CallStatus.in_progress, STARTED, False, [CALL_ID, "call_started"]),
        (
            "call_ended",
            CallStatus.completed,
            STARTED + timedelta(seconds=96.48),
            True,
            [CALL_ID, "call_ended"],
        ),
        (
            "call_analyzed",
            CallStatus.completed,
            STARTED + timedelta(seconds=131),
            True,
            [CALL_ID, "call_analyzed"],  # then a digest of the analysis
        ),
    ]


def test_a_redelivered_analysis_has_the_same_key_and_a_new_one_another() -> None:
    body = payload("call_analyzed")
    respaced = json.loads(json.dumps(body))
    respaced["call"]["call_analysis"] = dict(reversed(body["call"]["call_analysis"].items()))
    rerun = json.loads(json.dumps(body))
    rerun["call"]["call_analysis"]["call_summary"] = "Dana moved her cleaning."

    keys = [parsed("call_analyzed", given).dedupe_key for given in (body, respaced, rerun)]

    assert (keys[0] == keys[1], keys[0] == keys[2]) == (True, False)


@pytest.mark.parametrize(
    ("call_status", "reason", "status", "end_reason", "answered"),
    [
        ("ended", "user_hangup", CallStatus.completed, "user_hangup", True),
        ("ended", "agent_hangup", CallStatus.completed, "agent_hangup", True),
        ("ended", "call_transfer", CallStatus.completed, "transferred", True),
        ("ended", "voicemail_reached", CallStatus.completed, "voicemail", True),
        ("ended", "inactivity", CallStatus.completed, "timeout", True),
        ("ended", "max_duration_reached", CallStatus.completed, "timeout", True),
        ("error", "error_llm_websocket_open", CallStatus.failed, "error", True),
        ("ended", "error_asr", CallStatus.completed, "error", True),
        ("not_connected", "dial_no_answer", CallStatus.no_answer, "no_answer", False),
        ("not_connected", "dial_busy", CallStatus.busy, "busy", False),
        ("not_connected", "dial_failed", CallStatus.failed, "error", False),
        ("not_connected", "manual_stopped", CallStatus.canceled, "other", False),
        ("not_connected", "concurrency_limit_reached", CallStatus.failed, "error", False),
        ("ended", "scam_detected", CallStatus.completed, "other", True),
    ],
)
def test_call_status_and_disconnection_reason(
    call_status: str, reason: str, status: CallStatus, end_reason: str, answered: bool
) -> None:
    call = dict(payload("get_call"), call_status=call_status, disconnection_reason=reason)

    details = call_details(RetellCall.model_validate(call))

    assert (
        details.status,
        details.end_reason,
        details.end_reason_raw,
        details.answered_at is not None,
    ) == (status, end_reason, reason, answered)


def test_an_unconnected_call_has_no_answer_and_no_recording_to_wait_for() -> None:
    body = {
        "event": "call_ended",
        "call": {
            "call_id": "call_00000000000000000000000001",
            "call_type": "phone_call",
            "call_status": "not_connected",
            "direction": "outbound",
            "from_number": "+16505550188",
            "to_number": "+14155550999",
            "start_timestamp": 1773327845250,
            "end_timestamp": 1773327873250,
            "duration_ms": 0,
            "disconnection_reason": "dial_no_answer",
        },
    }
    [event] = RetellProvider().parse(request(json.dumps(body).encode()), None)
    state = fold([("evt_1", event)])

    record = assembled_record(
        state,
        CallDetails.model_validate(state.completion),
        provider="retell",
        source="retell-prod",
        provider_call_id="call_00000000000000000000000001",
        at=STARTED,
    )

    assert {
        key: record[key]
        for key in (
            "status",
            "end_reason",
            "customer_number",
            "initiated_at",
            "answered_at",
            "ended_at",
            "duration_s",
            "recording",
        )
    } == {
        "status": "no_answer",
        "end_reason": "no_answer",
        "customer_number": "+14155550999",
        "initiated_at": "2026-03-12T15:04:05.250000Z",
        "answered_at": None,
        "ended_at": "2026-03-12T15:04:33.250000Z",
        "duration_s": 0.0,
        "recording": {
            "status": "none",
            "url": None,
            "dual_url": None,
            "available_at": None,
            "archive": None,
        },
    }


def test_raw_latency_values_are_preferred_and_retells_figures_kept_without_them() -> None:
    record = payload("expected_record")

    assert (record["latency"]["turn"]["p50"], record["latency"]["turn"]["mean"]) == (975.0, 1020.0)
    assert Stats.model_validate(record["latency"]["stt"]) == Stats(
        count=5, p50=180, p90=240, p95=255, p99=270, min=120, max=274
    )


@pytest.mark.parametrize(
    ("product", "component"),
    [
        ("elevenlabs_tts", "tts"),
        ("cartesia_tts", "tts"),
        ("voice_engine", "platform"),
        ("background_voice_cancellation", "platform"),
        ("gpt-4o-mini", "llm"),
        ("gemini_2_0_flash", "llm"),
        ("llm_token_usage", "llm"),
        ("twilio_telephony", "telephony"),
        ("deepgram_asr", "stt"),
        ("knowledge_base", None),
    ],
)
def test_cost_products_are_filed_by_name(product: str, component: str | None) -> None:
    assert product_component(product) == component


def test_cost_is_converted_from_cents() -> None:
    details = call_details(RetellCall.model_validate(payload("get_call")))

    assert details.cost == Cost(
        total=0.1746,
        currency="USD",
        llm=0.0097,
        tts=0.011317,
        telephony=0.02425,
        platform=0.12125,  # the voice engine and background voice cancellation
    )


def test_a_recording_is_pending_until_retell_has_it_and_missing_if_never_stored() -> None:
    bare = dict(payload("get_call"), recording_url=None, recording_multi_channel_url=None)
    unstored = dict(bare, data_storage_setting="basic_attributes_only")

    assert [
        call_details(RetellCall.model_validate(call)).recording for call in (bare, unstored)
    ] == [Recording(status="pending"), Recording(status="missing")]


def test_custom_analysis_data_of_any_shape_is_kept() -> None:
    body = payload("call_analyzed")
    body["call"]["call_analysis"]["custom_analysis_data"] = ["booked", "thursday"]

    assert parsed("call_analyzed", body).enrich == {
        "analysis": {
            "summary": "Dana moved her cleaning to Thursday at 2pm.",
            "success": True,
            "sentiment": "positive",
            "data": {"custom_analysis_data": ["booked", "thursday"]},
        }
    }


# ----------------------------------------------------------------- signatures


def sdk_signed(body: bytes, key: str = API_KEY, at_ms: int | None = None) -> dict[str, str]:
    """Headers signed by retell-sdk itself."""
    stamp = int(time.time() * 1000) if at_ms is None else at_ms
    signature = symmetric["sign"](body.decode(), key, stamp)
    return {"content-type": "application/json", "x-retell-signature": signature}


def retell_source(client: TestClient, key: str, **settings: str) -> dict[str, Any]:
    response = client.post(
        "/api/sources",
        json={
            "name": "retell-prod",
            "provider": "retell",
            "settings": settings,
            "credentials": {"api_key": API_KEY},
        },
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()
    return source


def test_a_source_needs_the_api_key(client: TestClient) -> None:
    response = client.post(
        "/api/sources",
        json={"name": "retell", "provider": "retell", "credentials": {"webhook_secret": "x"}},
        headers={"authorization": f"Bearer {create_org(client)}"},
    )

    assert (response.status_code, response.json()["field"]) == (422, "credentials.api_key")


def test_the_simulators_signature_verifies_with_retell_sdk() -> None:
    body = payload("call_ended")
    content, headers = simulated.signed_request(API_KEY, body, time.time())

    assert verify(content.decode(), API_KEY, headers["x-retell-signature"]) is True
    assert verify(content.decode(), "key_other", headers["x-retell-signature"]) is False


MINUTE_MS = 60_000


@pytest.mark.parametrize(
    ("key", "tamper", "skew_ms", "status"),
    [
        (API_KEY, False, 0, 202),
        (API_KEY, False, -4 * MINUTE_MS, 202),
        (API_KEY, True, 0, 401),
        ("key_someone_else", False, 0, 401),
        (API_KEY, False, -6 * MINUTE_MS, 401),
        (API_KEY, False, 6 * MINUTE_MS, 401),
    ],
)
def test_a_request_signed_by_retell_sdk_is_accepted_and_bad_ones_are_401(
    client: TestClient, key: str, tamper: bool, skew_ms: int, status: int
) -> None:
    source = retell_source(client, create_org(client))
    body = json.dumps(payload("call_started")).encode()
    headers = sdk_signed(body, key, int(time.time() * 1000) + skew_ms)
    sent = body.replace(b"+14155550123", b"+14155550666") if tamper else body

    response = client.post(path_of(source["webhook_url"]), content=sent, headers=headers)

    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    "signature",
    [None, "", "d=abc", "v=1,d=zz", "v=notanumber,d=" + "0" * 64, "sha256=" + "0" * 64],
)
def test_a_missing_or_malformed_signature_is_401(client: TestClient, signature: str | None) -> None:
    source = retell_source(client, create_org(client))
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-retell-signature"] = signature

    response = client.post(
        path_of(source["webhook_url"]),
        content=json.dumps(payload("call_started")).encode(),
        headers=headers,
    )

    assert (response.status_code, response.headers["content-type"]) == (
        401,
        "application/problem+json",
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        ({"call": {"call_id": CALL_ID}}, 422, "event"),
        ({"event": "call_ended"}, 422, "call"),
        ({"event": "call_ended", "call": {"call_status": "ended"}}, 422, "call.call_id"),
        (
            {"event": "call_ended", "call": {"call_id": CALL_ID, "end_timestamp": "soon"}},
            422,
            "call.end_timestamp",
        ),
        ({"event": "chat_started", "call": {"call_id": CALL_ID}}, 422, "event"),
        ([1, 2], 422, None),
    ],
)
def test_malformed_bodies_are_a_clear_4xx(
    client: TestClient, body: Any, status: int, field: str | None
) -> None:
    source = retell_source(client, create_org(client))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    response = client.post(
        path_of(source["webhook_url"]), content=content, headers=sdk_signed(content)
    )

    assert (response.status_code, response.json().get("field")) == (status, field)


def test_the_deprecated_data_key_is_read_as_the_call() -> None:
    body = payload("call_started")
    body["data"] = body.pop("call")

    assert parsed("call_started", body) == parsed("call_started")


# ----------------------------------------------------------------- through the worker


class RetellApi(BackgroundServer):
    """`GET /v2/get-call/{call_id}` on loopback: no recording for the first `bare` requests,
    and the analysis only once `analysed` is set."""

    def __init__(self, call: dict[str, Any], *, bare: int = 0) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.analysed = False
        self._call, self._bare = call, bare
        super().__init__(Starlette(routes=[Route("/v2/get-call/{call_id}", self._get)]))

    async def _get(self, request: Request) -> JSONResponse:
        self.requests.append((request.path_params["call_id"], request.headers.get("authorization")))
        found = dict(self._call)
        if len(self.requests) <= self._bare:
            found |= {"recording_url": None, "recording_multi_channel_url": None}
        if self.analysed:
            found["call_analysis"] = payload("call_analyzed")["call"]["call_analysis"]
        return JSONResponse(found)


def post(client: TestClient, source: dict[str, Any], name: str) -> Any:
    body = json.dumps(payload(name)).encode()
    return client.post(path_of(source["webhook_url"]), content=body, headers=sdk_signed(body))


def test_end_to_end_the_late_analysis_lands_on_the_assembled_record(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)
    with RetellApi(payload("get_call"), bare=1) as api:
        source = retell_source(client, key, api_base_url=api.url)
        assert [post(client, source, name).status_code for name in WEBHOOKS[:2]] == [202, 202]
        assembled = wait_for_call(client, key, CALL_ID, in_state("assembled"))
        api.analysed = True
        assert post(client, source, "call_analyzed").status_code == 202
        assert post(client, source, "call_analyzed").json() == {"status": "duplicate"}
        analysed = wait_for_call(client, key, CALL_ID, lambda r: r["analysis"] is not None)

    expected = payload("expected_record")
    volatile = ("id", "org_id", "timeline", "assembly", "updated_at", "recording")
    assert {k: v for k, v in analysed.items() if k not in volatile} == {
        k: v for k, v in expected.items() if k not in volatile
    }
    assert (analysed["recording"]["url"], analysed["assembly"]["state"]) == (
        expected["recording"]["url"],
        "assembled",
    )
    unchanged = ("analysis", "timeline", "updated_at")
    assert {k: v for k, v in analysed.items() if k not in unchanged} == {
        k: v for k, v in assembled.items() if k not in unchanged
    }
    assert [entry["event"] for entry in analysed["timeline"]] == list(WEBHOOKS)
    # The recording was not there at first: get-call was read again, with the API key.
    assert api.requests[:2] == [(CALL_ID, f"Bearer {API_KEY}")] * 2


def test_a_lost_call_ended_still_finishes_the_call_from_call_analyzed(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)
    with RetellApi(payload("get_call")) as api:
        api.analysed = True
        source = retell_source(client, key, api_base_url=api.url)
        assert post(client, source, "call_started").status_code == 202
        assert post(client, source, "call_analyzed").status_code == 202
        record = wait_for_call(client, key, CALL_ID, in_state("assembled"))

    assert (record["status"], record["end_reason"], record["analysis"]["success"]) == (
        "completed",
        "user_hangup",
        True,
    )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Simulated recordings take up to 5 s to appear: wait longer for them than other tests."""
    return settings.model_copy(update={"recording_wait_s": 15.0})
