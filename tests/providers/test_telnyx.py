"""Telnyx: Ed25519 signatures checked against PyNaCl, recorded payloads, and end to end."""

import base64
import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey, VerifyKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from callwatch.calls.fold import fold
from callwatch.errors import InvalidInput, ProviderRejected, ProviderUnavailable
from callwatch.model.events import CallStatus
from callwatch.model.records import CallDetails
from callwatch.providers.base import FetchContext, SourceConfig
from callwatch.providers.telnyx.details import (
    call_status_details,
    end_reason_of,
    filled,
    quality_of,
)
from callwatch.providers.telnyx.provider import TelnyxProvider, public_key_text, signing_key
from callwatch.simulator import BackgroundServer
from callwatch.simulator import telnyx as simulated
from tests.conftest import create_org, path_of
from tests.factories import assembled_record, webhook_request

PAYLOADS = Path(__file__).parent.parent / "payloads" / "telnyx"
RECEIVED = datetime(2026, 9, 2, 9, 18, 20, tzinfo=UTC)
SESSION = "5c1a5b1e-8f4e-11f0-9a61-02420aef93a0"
CONTROL_ID = "v3:u5OAKGEPT3Dx8SnrLo2-sIUEXmS4tEsMDFtNTLyIJkDiUrDyk4bJlw"
WEBHOOKS = ("call_initiated", "call_answered", "call_recording_saved", "call_hangup", "call_cost")
API_KEY = "KEY0123456789ABCDEF_telnyx"
# The account's key pair, made with PyNaCl: an implementation independent of ours.
ACCOUNT = SigningKey(hashlib.sha256(b"telnyx test account").digest())
PUBLIC_KEY = base64.b64encode(bytes(ACCOUNT.verify_key)).decode()


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def raw(name: str) -> bytes:
    return (PAYLOADS / f"{name}.json").read_bytes()


def events_of(names: tuple[str, ...]) -> list[tuple[str, Any]]:
    adapter = TelnyxProvider()
    return [
        (f"evt_{index}", event)
        for index, name in enumerate(names)
        for event in adapter.parse(webhook_request(raw(name), RECEIVED), None)
    ]


def parsed(body: Any) -> Any:
    [event] = TelnyxProvider().parse(webhook_request(json.dumps(body).encode(), RECEIVED), None)
    return event


def record_from(names: tuple[str, ...], details: CallDetails) -> dict[str, Any]:
    return assembled_record(
        fold(events_of(names)),
        details,
        provider="telnyx",
        source="telnyx-prod",
        provider_call_id=SESSION,
        at=RECEIVED,
    )


def source_config(**credentials: str) -> SourceConfig:
    return SourceConfig(
        "src_1", "org_1", "telnyx-prod", "telnyx", {}, {"public_key": PUBLIC_KEY, **credentials}
    )


def completion() -> dict[str, Any]:
    state = fold(events_of(WEBHOOKS))
    assert state.completion is not None
    return state.completion


def fetched_with(answer: httpx.Response, **credentials: str) -> tuple[CallDetails, list[str]]:
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.path} {request.headers.get('authorization')}")
        return answer

    with httpx.Client(transport=httpx.MockTransport(api)) as client:
        state = fold(events_of(WEBHOOKS))  # as the pipeline asks: completion and fields
        context = FetchContext(SESSION, state.completion, state.fields)
        details = TelnyxProvider().fetch(client, source_config(**credentials), context)
    return details, seen


# ----------------------------------------------------------------- recorded payloads


def test_recorded_payloads_give_the_expected_record() -> None:
    details, seen = fetched_with(httpx.Response(200, json=payload("call_status")), api_key=API_KEY)

    assert record_from(WEBHOOKS, details) == payload("expected_record")
    assert seen == [f"/v2/calls/{CONTROL_ID} Bearer {API_KEY}"]


def test_the_call_status_api_is_authoritative_over_the_hangup() -> None:
    fetched = call_status_details(payload("call_status"))
    hangup = CallDetails.model_validate(completion())

    assert filled(fetched, hangup).model_dump(
        include={"initiated_at", "ended_at", "duration_s"}
    ) == {
        "initiated_at": datetime(2026, 9, 2, 9, 17, 40, 509000, tzinfo=UTC),
        "ended_at": datetime(2026, 9, 2, 9, 18, 6, 396000, tzinfo=UTC),
        "duration_s": 22.0,
    }


EVENTS_ONLY = {
    "ended_at": "2026-09-02T09:18:06.396120Z",
    "duration_s": 21.8,
    "cost": dict(payload("expected_record")["cost"], per_minute=0.0512),
}


@pytest.mark.parametrize("status", [404, 410, 422])
def test_a_call_telnyx_has_forgotten_falls_back_to_what_the_events_said(status: int) -> None:
    details, seen = fetched_with(
        httpx.Response(status, json={"errors": [{"code": "90018"}]}), api_key=API_KEY
    )

    assert record_from(WEBHOOKS, details) == payload("expected_record") | EVENTS_ONLY
    assert len(seen) == 1


def test_without_an_api_key_the_events_make_the_record() -> None:
    details, seen = fetched_with(httpx.Response(500))

    assert (record_from(WEBHOOKS, details), seen) == (
        payload("expected_record") | EVENTS_ONLY,
        [],
    )


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(500), ProviderUnavailable),
        (httpx.Response(429, headers={"retry-after": "3"}), ProviderUnavailable),
        (httpx.Response(401), ProviderRejected),
        (httpx.Response(200, json={"data": {"call_duration": "long"}}), ProviderRejected),
    ],
)
def test_other_api_failures_retry_or_give_up(answer: httpx.Response, error: type) -> None:
    with pytest.raises(error):
        fetched_with(answer, api_key=API_KEY)


def test_the_recording_event_may_come_first_and_lands_on_the_same_record() -> None:
    details, _ = fetched_with(httpx.Response(200, json=payload("call_status")), api_key=API_KEY)
    arrival = (
        "call_recording_saved",
        "call_cost",
        "call_hangup",
        "call_answered",
        "call_initiated",
    )

    assert record_from(arrival, details) == payload("expected_record")
    assert {event.provider_call_id for _, event in events_of(arrival)} == {SESSION}


@pytest.mark.parametrize(
    ("cause", "sip", "status", "end_reason"),
    [
        ("normal_clearing", "200", CallStatus.completed, None),
        ("time_limit", "200", CallStatus.completed, "timeout"),
        ("user_busy", "486", CallStatus.busy, "busy"),
        ("call_rejected", "603", CallStatus.busy, "busy"),
        ("timeout", "480", CallStatus.no_answer, "no_answer"),
        ("no_answer", None, CallStatus.no_answer, "no_answer"),
        ("originator_cancel", "487", CallStatus.canceled, "other"),
        ("not_found", "404", CallStatus.failed, "error"),
        ("unspecified", "503", CallStatus.failed, "error"),
        ("unspecified", "486", CallStatus.busy, "busy"),
        ("unspecified", "unspecified", CallStatus.completed, None),
    ],
)
def test_hangup_causes(
    cause: str, sip: str | None, status: CallStatus, end_reason: str | None
) -> None:
    body = payload("call_hangup")
    body["data"]["payload"] |= {"hangup_cause": cause, "sip_hangup_cause": sip}

    event = parsed(body)

    assert (event.status, event.terminal, (event.detail or {}).get("end_reason")) == (
        status,
        True,
        end_reason,
    )


@pytest.mark.parametrize(
    ("source", "direction", "end_reason"),
    [
        ("callee", "outbound", "user_hangup"),
        ("caller", "outbound", "agent_hangup"),
        ("caller", "inbound", "user_hangup"),
        ("callee", "inbound", "agent_hangup"),
        ("unknown", "inbound", None),
        ("callee", None, None),
    ],
)
def test_who_hung_up_needs_the_legs_direction(
    source: str, direction: str | None, end_reason: str | None
) -> None:
    reason = end_reason_of(CallStatus.completed, "normal_clearing", source, direction)

    assert reason == end_reason


def test_quality_is_the_inbound_side_else_the_outbound() -> None:
    only_outbound = payload("call_hangup")
    only_outbound["data"]["payload"]["call_quality_stats"] = {
        "inbound": {"packet_count": "0"},
        "outbound": {"mos": "3.9", "jitter_max_variance": "n/a", "packet_count": "200"},
    }
    none = payload("call_hangup")
    del none["data"]["payload"]["call_quality_stats"]

    qualities = [
        parsed(body).detail.get("quality") for body in (payload("call_hangup"), only_outbound, none)
    ]

    assert qualities == [
        {"mos": 4.5, "jitter_ms": 2.74, "packet_loss_pct": 0.825},
        {"mos": 3.9},
        None,
    ]
    assert quality_of(None) is None


def test_a_failed_cost_calculation_adds_nothing_and_any_cost_shaped_event_counts() -> None:
    failed = payload("call_cost")
    failed["data"]["payload"] |= {"status": "error", "total_cost": None}
    renamed = payload("call_cost")
    renamed["data"]["event_type"] = "call.cost.calculated"

    error, cost = parsed(failed), parsed(renamed)

    assert (error.enrich, error.status, error.terminal) == (None, None, False)
    assert cost.enrich == {
        "cost": {
            "total": 0.0186,
            "currency": "USD",
            "stt": 0.0025,
            "tts": 0.0021,
            "telephony": 0.014,
        },
        "billed_duration_s": 60.0,
    }


def test_answering_machine_detection_makes_it_a_voicemail_and_a_recording_error_missing() -> None:
    machine = payload("call_answered")
    machine["data"] |= {"event_type": "call.machine.detection.ended", "id": "amd-1"}
    machine["data"]["payload"]["result"] = "machine"
    error = payload("call_recording_saved")
    error["data"] |= {"event_type": "call.recording.error", "id": "rec-err-1"}

    amd, failed = parsed(machine), parsed(error)

    assert (amd.enrich, amd.status, failed.enrich) == (
        {"end_reason": "voicemail"},
        None,
        {"recording": {"status": "missing"}},
    )


# ----------------------------------------------------------------- credentials and signatures


def test_a_source_needs_the_accounts_public_key() -> None:
    adapter = TelnyxProvider()
    seed = base64.b64encode(hashlib.sha256(b"simulator").digest()).decode()
    derived: dict[str, str] = {"private_key": seed}
    adapter.prepare_credentials(derived)

    def refusal(credentials: dict[str, str]) -> str | None:
        with pytest.raises(InvalidInput) as refused:
            adapter.prepare_credentials(credentials)
        return refused.value.field

    assert [
        refusal({}),
        refusal({"public_key": "not-a-key"}),
        refusal({"public_key": base64.b64encode(b"short").decode()}),
        refusal({"public_key": PUBLIC_KEY, "private_key": seed}),
    ] == [
        "credentials.public_key",
        "credentials.public_key",
        "credentials.public_key",
        "credentials.private_key",
    ]
    nacl_public = bytes(SigningKey(hashlib.sha256(b"simulator").digest()).verify_key)
    assert derived["public_key"] == base64.b64encode(nacl_public).decode()


def test_a_source_without_a_public_key_is_a_422(client: TestClient) -> None:
    response = client.post(
        "/api/sources",
        json={"name": "telnyx", "provider": "telnyx", "credentials": {"api_key": API_KEY}},
        headers={"authorization": f"Bearer {create_org(client)}"},
    )

    assert (response.status_code, response.json()["field"]) == (422, "credentials.public_key")


def nacl_signed(body: bytes, *, key: SigningKey = ACCOUNT, at: float | None = None) -> Any:
    """Headers as Telnyx sends them, signed with PyNaCl rather than our code."""
    stamp = str(int(time.time() if at is None else at))
    signature = key.sign(stamp.encode() + b"|" + body).signature
    return {
        "content-type": "application/json",
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": stamp,
    }


def telnyx_source(client: TestClient, key: str, **settings: str) -> dict[str, Any]:
    response = client.post(
        "/api/sources",
        json={
            "name": "telnyx-prod",
            "provider": "telnyx",
            "settings": settings,
            "credentials": {"public_key": PUBLIC_KEY, "api_key": API_KEY},
        },
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()
    return source


OTHER_ACCOUNT = SigningKey(hashlib.sha256(b"another account").digest())


@pytest.mark.parametrize(
    ("sign", "tamper", "status"),
    [
        (lambda body: nacl_signed(body), False, 202),
        (lambda body: nacl_signed(body), True, 401),
        (lambda body: nacl_signed(body, key=OTHER_ACCOUNT), False, 401),
        (lambda body: nacl_signed(body, at=time.time() - 301), False, 401),
        (lambda body: nacl_signed(body, at=time.time() + 301), False, 401),
        (lambda body: nacl_signed(body, at=time.time() - 290), False, 202),
        (lambda body: nacl_signed(body) | {"telnyx-timestamp": "yesterday"}, False, 401),
        (lambda body: nacl_signed(body) | {"telnyx-signature-ed25519": "%%%"}, False, 401),
        (lambda body: {"content-type": "application/json"}, False, 401),
    ],
    ids=[
        "pynacl-signed",
        "tampered",
        "wrong-key",
        "stale",
        "future",
        "within-300s",
        "bad-timestamp",
        "not-base64",
        "unsigned",
    ],
)
def test_signatures(client: TestClient, sign: Any, tamper: bool, status: int) -> None:
    source = telnyx_source(client, create_org(client))
    body = raw("call_initiated")
    headers = sign(body)
    sent = body.replace(b"+14155550142", b"+14155550666") if tamper else body

    response = client.post(path_of(source["webhook_url"]), content=sent, headers=headers)

    assert response.status_code == status, response.text


def test_the_simulators_signature_verifies_with_pynacl() -> None:
    secret = "a simulator passphrase"
    body = payload("call_hangup")
    content, headers = simulated.signed_request(secret, body, now=1_800_000_000.9)
    verify_key = VerifyKey(base64.b64decode(public_key_text(signing_key(secret))))

    verified = verify_key.verify(
        headers["telnyx-timestamp"].encode() + b"|" + content,
        base64.b64decode(headers["telnyx-signature-ed25519"]),
    )

    assert (verified, headers["telnyx-timestamp"], json.loads(content)) == (
        b"1800000000|" + content,
        "1800000000",
        body,
    )
    seed = base64.b64encode(hashlib.sha256(b"seed").digest()).decode()
    assert (
        public_key_text(signing_key(seed))
        == base64.b64encode(bytes(SigningKey(hashlib.sha256(b"seed").digest()).verify_key)).decode()
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        (b"CallSid=v3%3Aabc&CallStatus=completed", 400, None),
        ({"event_type": "call.hangup"}, 422, "data"),
        ({"data": {"event_type": "call.hangup", "id": "x"}}, 422, "data.payload"),
        (
            {"data": {"event_type": "call.hangup", "id": "x", "payload": {}}},
            422,
            "data.payload.call_session_id",
        ),
        ({"data": {"event_type": "", "id": "x", "payload": {}}}, 422, "data.event_type"),
    ],
)
def test_malformed_bodies_are_a_clear_4xx(
    client: TestClient, body: Any, status: int, field: str | None
) -> None:
    source = telnyx_source(client, create_org(client))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    response = client.post(
        path_of(source["webhook_url"]), content=content, headers=nacl_signed(content)
    )

    assert (response.status_code, response.json().get("field")) == (status, field)


# ----------------------------------------------------------------- end to end


class TelnyxApi(BackgroundServer):
    """`GET /v2/calls/{call_control_id}` on loopback."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self._answer = answer
        super().__init__(Starlette(routes=[Route("/v2/calls/{call_control_id}", self._get)]))

    async def _get(self, request: Request) -> JSONResponse:
        self.requests.append(
            (request.path_params["call_control_id"], request.headers.get("authorization"))
        )
        return JSONResponse(self._answer)


VOLATILE = ("id", "org_id", "timeline", "assembly", "updated_at")


def wait_for_record(client: TestClient, key: str, call_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = client.get(f"/api/calls/{call_id}", headers={"authorization": f"Bearer {key}"})
        if response.status_code == 200 and response.json()["assembly"]["state"] == "assembled":
            record: dict[str, Any] = response.json()
            return record
        time.sleep(0.1)
    raise AssertionError(f"{call_id} was not assembled")


def test_end_to_end_with_the_recording_before_the_hangup(client: TestClient, worker: None) -> None:
    key = create_org(client)
    arrival = (
        "call_recording_saved",
        "call_initiated",
        "call_answered",
        "call_hangup",
        "call_cost",
    )
    with TelnyxApi(payload("call_status")) as api:
        source = telnyx_source(client, key, api_base_url=api.url + "/v2")
        for name in arrival:
            response = client.post(
                path_of(source["webhook_url"]), content=raw(name), headers=nacl_signed(raw(name))
            )
            assert response.status_code == 202, response.text
        again = client.post(
            path_of(source["webhook_url"]),
            content=raw("call_hangup"),
            headers=nacl_signed(raw("call_hangup")),
        )
        record = wait_for_record(client, key, SESSION)
        deadline = time.monotonic() + 10
        while record["cost"] is None and time.monotonic() < deadline:
            record = wait_for_record(client, key, SESSION)
        listed = client.get("/api/calls", headers={"authorization": f"Bearer {key}"}).json()

    expected = payload("expected_record")
    assert again.json() == {"status": "duplicate"}
    assert [item["provider_call_id"] for item in listed["items"]] == [SESSION]
    assert {k: v for k, v in record.items() if k not in VOLATILE} == {
        k: v for k, v in expected.items() if k not in VOLATILE
    }
    assert [entry["event"] for entry in record["timeline"]] == [
        "call.initiated",
        "call.answered",
        "call.hangup",
        "call.recording.saved",
        "call.cost",
    ]
    assert api.requests[0] == (CONTROL_ID, f"Bearer {API_KEY}")


def test_end_to_end_a_recording_after_the_wait_still_lands(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)

    def send(name: str) -> None:
        response = client.post(
            path_of(source["webhook_url"]), content=raw(name), headers=nacl_signed(raw(name))
        )
        assert response.status_code == 202, response.text

    with TelnyxApi(payload("call_status")) as api:
        source = telnyx_source(client, key, api_base_url=api.url + "/v2")
        for name in ("call_initiated", "call_answered", "call_hangup"):
            send(name)
        before = wait_for_record(client, key, SESSION)  # the 2 s recording wait runs out
        send("call_recording_saved")
        send("call_cost")
        deadline = time.monotonic() + 10
        after = before
        while len(after["timeline"]) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
            after = wait_for_record(client, key, SESSION)

    expected = payload("expected_record")
    assert (before["recording"]["status"], before["cost"]) == ("missing", None)
    assert {k: v for k, v in after.items() if k not in VOLATILE} == {
        k: v for k, v in expected.items() if k not in VOLATILE
    }
