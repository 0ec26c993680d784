"""Vapi: recorded server messages to the exact record, the secret and HMAC schemes, late
status updates, and end to end through the worker."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from callwatch.calls.fold import fold
from callwatch.model.events import CallStatus
from callwatch.model.records import Analysis, CallDetails, Cost, Interruptions, Recording
from callwatch.providers.base import WebhookRequest
from callwatch.providers.vapi.call import VapiCall, end_reason_of, status_of
from callwatch.providers.vapi.details import call_details
from callwatch.providers.vapi.provider import VapiProvider
from callwatch.settings import Settings
from callwatch.simulator import BackgroundServer
from tests.conftest import create_org, path_of
from tests.factories import assembled_record, in_state, wait_for_call, webhook_request

PAYLOADS = Path(__file__).parent.parent / "payloads" / "vapi"
CALL_ID = "b3f1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
RECEIVED = datetime(2026, 4, 2, 9, 16, 45, tzinfo=UTC)
WEBHOOKS = (
    "status_update_queued",
    "status_update_ringing",
    "status_update_in_progress",
    "user_interrupted",
    "status_update_ended",
    "end_of_call_report",
)
SECRET = "vapi-server-secret-7d1f"
HMAC_SECRET = "vapi-hmac-secret-20c4"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def request(body: bytes) -> WebhookRequest:
    return webhook_request(body, RECEIVED)


def parsed(name: str, body: Any = None) -> Any:
    given = payload(name) if body is None else body
    [event] = VapiProvider().parse(request(json.dumps(given).encode()), None)
    return event


def record_from(names: tuple[str, ...], call: dict[str, Any] | None) -> dict[str, Any]:
    """The record the pipeline builds from these messages and this GET /call answer (None: no
    API key, so the first final message's own details)."""
    state = fold([(f"evt_{index}", parsed(name)) for index, name in enumerate(names)])
    details = (
        call_details(VapiCall.model_validate(call))
        if call
        else CallDetails.model_validate(state.completion)
    )
    return assembled_record(
        state,
        details,
        provider="vapi",
        source="vapi-prod",
        provider_call_id=CALL_ID,
        at=RECEIVED,
    )


def without(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in keys}


def test_recorded_payloads_give_the_expected_record() -> None:
    assert record_from(WEBHOOKS, payload("call")) == payload("expected_record")


def test_without_an_api_key_the_report_gives_the_same_record() -> None:
    assert record_from(WEBHOOKS, None) == payload("expected_record")


def test_a_late_status_update_after_the_report_changes_no_outcome() -> None:
    on_time = ("status_update_queued", "status_update_ended", "end_of_call_report")
    early = record_from(on_time, payload("call"))
    late = record_from(
        (*on_time, "status_update_in_progress", "status_update_ringing"), payload("call")
    )

    assert (late["status"], late["end_reason"], late["answered_at"]) == (
        "completed",
        "user_hangup",
        early["answered_at"],
    )
    assert [(entry["event"], entry["status"]) for entry in late["timeline"]] == [
        ("status-update", "queued"),
        ("status-update", "ringing"),
        ("status-update", "in_progress"),
        ("status-update", "completed"),
        ("end-of-call-report", "completed"),
    ]
    # The late ringing tells how long it rang; nothing else moves.
    assert (early["ring_duration_s"], late["ring_duration_s"]) == (None, 5.5)
    assert without(late, "timeline", "ring_duration_s") == without(
        early, "timeline", "ring_duration_s"
    )


def test_each_message_becomes_one_event_at_its_own_time() -> None:
    events = [parsed(name) for name in WEBHOOKS]

    assert [(e.type, e.status, e.at, e.terminal, e.dedupe_key) for e in events] == [
        (
            "status-update",
            CallStatus.queued,
            datetime(2026, 4, 2, 9, 15, 0, 420000, tzinfo=UTC),
            False,
            f"{CALL_ID}:status-update:queued:1775121300420",
        ),
        (
            "status-update",
            CallStatus.ringing,
            datetime(2026, 4, 2, 9, 15, 0, 900000, tzinfo=UTC),
            False,
            f"{CALL_ID}:status-update:ringing:1775121300900",
        ),
        (
            "status-update",
            CallStatus.in_progress,
            datetime(2026, 4, 2, 9, 15, 6, 400000, tzinfo=UTC),
            False,
            f"{CALL_ID}:status-update:in-progress:1775121306400",
        ),
        (
            "user-interrupted",
            None,
            datetime(2026, 4, 2, 9, 15, 20, 760000, tzinfo=UTC),
            False,
            f"{CALL_ID}:user-interrupted::1775121320760",
        ),
        (
            "status-update",
            CallStatus.completed,
            datetime(2026, 4, 2, 9, 16, 38, 650000, tzinfo=UTC),
            True,
            f"{CALL_ID}:status-update:ended:1775121398650",
        ),
        (
            "end-of-call-report",
            CallStatus.completed,
            datetime(2026, 4, 2, 9, 16, 42, 300000, tzinfo=UTC),
            True,
            f"{CALL_ID}:end-of-call-report::1775121402300",
        ),
    ]


def test_a_message_without_a_timestamp_is_at_its_arrival_and_keyed_by_its_bytes() -> None:
    body = payload("status_update_ringing")
    del body["message"]["timestamp"]

    event = parsed("status_update_ringing", body)

    assert (event.at, event.dedupe_key.rsplit(":", 1)[0]) == (
        RECEIVED,
        f"{CALL_ID}:status-update:ringing",
    )


@pytest.mark.parametrize(
    ("reason", "end_reason", "status"),
    [
        ("customer-ended-call", "user_hangup", CallStatus.completed),
        ("assistant-ended-call", "agent_hangup", CallStatus.completed),
        ("assistant-said-end-call-phrase", "agent_hangup", CallStatus.completed),
        ("assistant-forwarded-call", "transferred", CallStatus.completed),
        ("customer-did-not-answer", "no_answer", CallStatus.no_answer),
        ("customer-busy", "busy", CallStatus.busy),
        ("voicemail", "voicemail", CallStatus.completed),
        ("silence-timed-out", "timeout", CallStatus.completed),
        ("exceeded-max-duration", "timeout", CallStatus.completed),
        ("pipeline-error-openai-llm-failed", "error", CallStatus.failed),
        ("call.in-progress.error-vapifault-openai-llm-failed", "error", CallStatus.failed),
        ("twilio-failed-to-connect-call", "error", CallStatus.failed),
        ("assistant-not-found", "error", CallStatus.failed),
        ("manually-canceled", "other", CallStatus.canceled),
        ("phone-call-provider-closed-websocket", "other", CallStatus.completed),
    ],
)
def test_ended_reasons(reason: str, end_reason: str, status: CallStatus) -> None:
    assert (end_reason_of(reason), status_of(reason)) == (end_reason, status)


def test_the_report_fills_what_get_call_leaves_out() -> None:
    """GET /call names the number by id only; the messages give it."""
    details = call_details(VapiCall.model_validate(payload("call")))
    record = payload("expected_record")

    assert (details.from_number, record["from_number"], record["to_number"]) == (
        None,
        "+16505550111",
        "+14155550142",
    )


def test_cost_from_the_breakdown_or_from_the_reports_items() -> None:
    from_api = call_details(VapiCall.model_validate(payload("call"))).cost
    report = payload("end_of_call_report")["message"]
    from_report = call_details(
        VapiCall.model_validate({**report["call"], **report}), final=True
    ).cost
    expected = Cost(
        total=0.1436,
        currency="USD",
        telephony=0.014,
        stt=0.0154,
        llm=0.0083,
        tts=0.0277,
        platform=0.077,
    )

    assert (from_api, from_report) == (expected, expected)


def test_deprecated_recording_urls_are_read() -> None:
    call = payload("call")
    urls = call["artifact"].pop("recording")
    call["artifact"].pop("recordingUrl")
    call["artifact"].pop("stereoRecordingUrl")

    assert call_details(VapiCall.model_validate(call)).recording == Recording(
        url=urls["mono"]["combinedUrl"], dual_url=urls["stereoUrl"]
    )


def test_a_report_without_a_recording_says_it_is_missing_and_the_api_pending() -> None:
    call = payload("call")
    for key in ("recording", "recordingUrl", "stereoRecordingUrl"):
        call["artifact"].pop(key)
    for key in ("recordingUrl", "stereoRecordingUrl"):
        call.pop(key)

    assert [
        call_details(VapiCall.model_validate(call), final=final).recording
        for final in (False, True)
    ] == [Recording(status="pending"), Recording(status="missing")]


def test_averages_stand_in_for_per_turn_latencies_and_interruptions_for_timings() -> None:
    call = payload("call")
    call["artifact"]["performanceMetrics"]["turnLatencies"] = []
    call["artifact"].pop("messages")
    call.pop("messages")

    details = call_details(VapiCall.model_validate(call))

    assert (
        details.latency.turn.mean if details.latency and details.latency.turn else None,
        details.latency_samples,
        details.interruptions,
        [turn.start_s for turn in details.transcript or []],
    ) == (1043.25, None, Interruptions(count=1), [None] * 7)


@pytest.mark.parametrize(
    ("verdict", "success", "data"),
    [
        ("true", True, {}),
        ("false", False, {}),
        (True, True, {}),
        ("8", None, {"successEvaluation": "8"}),
    ],
)
def test_success_evaluation(verdict: Any, success: bool | None, data: dict[str, Any]) -> None:
    call = payload("call")
    call["analysis"] = {"summary": "s", "successEvaluation": verdict, "structuredData": {}}

    analysis = call_details(VapiCall.model_validate(call)).analysis

    assert analysis == Analysis(summary="s", success=success, data=data)


def test_structured_data_of_any_shape_is_kept() -> None:
    call = payload("call")
    call["analysis"]["structuredData"] = "renewed, annual"

    analysis = call_details(VapiCall.model_validate(call)).analysis

    assert analysis == Analysis(
        summary="Jordan switched the renewal to the annual plan.",
        success=True,
        data={"value": "renewed, annual"},
    )


# ----------------------------------------------------------------- authentication


def vapi_source(client: TestClient, key: str, **credentials: str) -> dict[str, Any]:
    response = client.post(
        "/api/sources",
        json={
            "name": "vapi-prod",
            "provider": "vapi",
            "settings": {"api_base_url": credentials.pop("api_base_url", "http://127.0.0.1:9")},
            "credentials": credentials or {"secret": SECRET},
        },
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()
    return source


def test_a_source_needs_a_secret_or_an_hmac_secret(client: TestClient) -> None:
    key = create_org(client)

    response = client.post(
        "/api/sources",
        json={"name": "vapi", "provider": "vapi", "credentials": {"api_key": "k"}},
        headers={"authorization": f"Bearer {key}"},
    )

    assert (response.status_code, response.json()["field"]) == (422, "credentials.webhook_secret")


def hmac_of(body: bytes, *, secret: str = HMAC_SECRET, encoding: str = "hex") -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


BODY = json.dumps(payload("status_update_in_progress")).encode()
Headers = dict[str, str] | Callable[[], dict[str, str]]


def timestamped(sign_at_s: int = 0, stamp_at_s: int = 0, *, ms: bool = False) -> Headers:
    """An HMAC over `timestamp.body`, made when the test runs: the window is only 5 min, and
    a whole test run takes longer than that."""

    def headers() -> dict[str, str]:
        now, scale = int(time.time()), 1000 if ms else 1
        signed = f"{(now + sign_at_s) * scale}.".encode() + BODY
        digest = hmac.new(HMAC_SECRET.encode(), signed, hashlib.sha256).hexdigest()
        return {"x-signature": digest, "x-timestamp": str((now + stamp_at_s) * scale)}

    return headers


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"authorization": f"Bearer {SECRET}"}, 202),
        ({"x-vapi-secret": SECRET}, 202),
        ({"authorization": "Bearer wrong-secret"}, 401),
        ({"x-vapi-secret": "wrong-secret"}, 401),
        ({"authorization": SECRET}, 401),  # no Bearer scheme
        ({}, 401),
        ({"x-vapi-signature": hmac_of(BODY)}, 202),
        ({"x-vapi-signature": hmac_of(BODY, encoding="base64")}, 202),
        ({"x-signature": "sha256=" + hmac_of(BODY)}, 202),
        (timestamped(), 202),
        (timestamped(ms=True), 202),
        (timestamped(stamp_at_s=1), 401),
        (timestamped(-600, -600), 401),
        ({"x-vapi-signature": hmac_of(BODY, secret="other")}, 401),
        ({"x-vapi-signature": hmac_of(BODY + b" ")}, 401),
        ({"x-vapi-signature": "not-a-digest"}, 401),
        # A right secret does not excuse a wrong signature.
        ({"x-vapi-signature": hmac_of(b"{}"), "authorization": f"Bearer {SECRET}"}, 401),
    ],
)
def test_the_secret_and_the_hmac_are_checked(
    client: TestClient, headers: Headers, status: int
) -> None:
    source = vapi_source(client, create_org(client), secret=SECRET, hmac_secret=HMAC_SECRET)

    response = client.post(
        path_of(source["webhook_url"]),
        content=BODY,
        headers={
            "content-type": "application/json",
            **(headers() if callable(headers) else headers),
        },
    )

    assert response.status_code == status, response.text


def test_an_hmac_only_source_wants_the_signature_in_its_header(client: TestClient) -> None:
    source = vapi_source(
        client, create_org(client), hmac_secret=HMAC_SECRET, hmac_header="X-Hook-Signature"
    )
    sent = [
        {"x-hook-signature": hmac_of(BODY)},
        {"x-vapi-signature": hmac_of(BODY)},
        {"authorization": f"Bearer {SECRET}"},
    ]

    statuses = [
        client.post(
            path_of(source["webhook_url"]),
            content=BODY,
            headers={"content-type": "application/json", **headers},
        ).status_code
        for headers in sent
    ]

    assert statuses == [202, 401, 401]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        ({"type": "status-update"}, 422, "message"),
        ({"message": {"status": "ringing", "call": {"id": CALL_ID}}}, 422, "message.type"),
        ({"message": {"type": "status-update", "status": "ringing"}}, 422, "message.call.id"),
        ({"message": {"type": "speech-update", "call": {"id": CALL_ID}}}, 422, "message.type"),
        (
            {"message": {"type": "status-update", "call": {"id": CALL_ID, "startedAt": "soon"}}},
            422,
            "message.call.startedAt",
        ),
        (
            {"message": {"type": "end-of-call-report", "call": {"id": CALL_ID}, "costs": 3}},
            422,
            "message.costs",
        ),
    ],
)
def test_malformed_bodies_are_a_clear_4xx(
    client: TestClient, body: Any, status: int, field: str | None
) -> None:
    source = vapi_source(client, create_org(client))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    response = client.post(
        path_of(source["webhook_url"]),
        content=content,
        headers={"content-type": "application/json", "x-vapi-secret": SECRET},
    )

    assert (response.status_code, response.json().get("field")) == (status, field)


# ----------------------------------------------------------------- through the worker


class VapiApi(BackgroundServer):
    """`GET /call/{id}` on loopback."""

    def __init__(self, call: dict[str, Any]) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self._call = call
        super().__init__(Starlette(routes=[Route("/call/{call_id}", self._get)]))

    async def _get(self, request: Request) -> JSONResponse:
        self.requests.append((request.path_params["call_id"], request.headers.get("authorization")))
        return JSONResponse(self._call)


def post(client: TestClient, source: dict[str, Any], name: str) -> Any:
    return client.post(
        path_of(source["webhook_url"]),
        content=json.dumps(payload(name)).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {SECRET}"},
    )


def test_end_to_end_a_late_status_update_lands_without_regressing(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)
    on_time = ("status_update_queued", "status_update_ended", "end_of_call_report")
    with VapiApi(payload("call")) as api:
        source = vapi_source(
            client, key, secret=SECRET, api_key="vapi-private-key", api_base_url=api.url
        )
        assert [post(client, source, name).status_code for name in on_time] == [202] * 3
        assembled = wait_for_call(client, key, CALL_ID, in_state("assembled"))
        late = ("status_update_in_progress", "status_update_ringing", "user_interrupted")
        assert [post(client, source, name).status_code for name in late] == [202] * 3
        assert post(client, source, "status_update_ringing").json() == {"status": "duplicate"}
        landed = wait_for_call(client, key, CALL_ID, lambda r: len(r["timeline"]) == 6)

    expected = payload("expected_record")
    volatile = ("id", "org_id", "timeline", "assembly", "updated_at", "recording")
    assert without(landed, *volatile) == without(expected, *volatile)
    assert (landed["recording"]["url"], landed["assembly"]) == (
        expected["recording"]["url"],
        assembled["assembly"],
    )
    assert [entry["event"] for entry in landed["timeline"]] == [
        entry["event"] for entry in expected["timeline"]
    ]
    assert without(landed, "timeline", "updated_at", "ring_duration_s") == without(
        assembled, "timeline", "updated_at", "ring_duration_s"
    )
    assert api.requests == [(CALL_ID, "Bearer vapi-private-key")]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Simulated recordings take up to 5 s to appear: wait longer for them than other tests."""
    return settings.model_copy(update={"recording_wait_s": 15.0})
