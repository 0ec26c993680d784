"""Twilio: recorded callbacks to the exact record, signatures checked against Twilio's own
RequestValidator both ways, order and duplicates, and end to end with the API on loopback."""

import base64
import hashlib
import itertools
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from twilio.request_validator import RequestValidator

from callwatch.app import create_app
from callwatch.calls.fold import fold
from callwatch.cli.main import main
from callwatch.model.events import CallEvent, CallStatus
from callwatch.model.records import CallError, Recording
from callwatch.providers.base import WebhookRequest
from callwatch.providers.twilio.call import call_details, recording_of
from callwatch.providers.twilio.provider import TwilioProvider
from callwatch.providers.twilio.signature import signature_valid
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.simulator import BackgroundServer, DetailServer, make_call, run_simulation
from callwatch.simulator import twilio as simulated
from tests.conftest import create_org, path_of
from tests.factories import assembled_record, wait_for_call

PAYLOADS = Path(__file__).parent.parent / "payloads" / "twilio"
PUBLIC = "https://calls.example.com"  # CALLWATCH_PUBLIC_URL: the proxy in front of callwatch
TOKEN = "5f2b8c1e9d4a7f3b6e0c2d8a1b9f4e7c"
AC = "AC9f3c2b1a0e8d7c6b5a4f3e2d1c0b9a8f"
CA = "CA1b2c3d4e5f60718293a4b5c6d7e8f901"
RE = "RE7e6d5c4b3a29180f7e6d5c4b3a291807"
RECEIVED = datetime(2026, 5, 14, 16, 2, 11, 400000, tzinfo=UTC)
CALLBACKS = ("call_initiated", "call_ringing", "call_answered", "call_completed")
# When each callback arrives, in seconds: Twilio posts the recording once it is processed.
ARRIVALS = {**dict(zip(CALLBACKS, (0, 1, 8, 70), strict=True)), "recording_completed": 75}
FORM = "application/x-www-form-urlencoded"
UNANSWERED_END = {"no_answer": "no_answer", "busy": "busy", "failed": "error", "canceled": "other"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"public_url": PUBLIC})


def body_of(name: str) -> bytes:
    return (PAYLOADS / f"{name}.txt").read_bytes()


def params_of(name: str, **changes: str | None) -> dict[str, str]:
    params = dict(parse_qsl(body_of(name).decode(), keep_blank_values=True))
    params |= {key: value for key, value in changes.items() if value is not None}
    return {key: value for key, value in params.items() if changes.get(key, "") is not None}


def api(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def request(content: bytes, after_s: float = 0, *, url: str = PUBLIC + "/webhooks/t") -> Any:
    return WebhookRequest(
        body=content,
        headers={},
        content_type=FORM,
        client_ip=None,
        url=url,
        received_at=RECEIVED + timedelta(seconds=after_s),
    )


def parsed(name: str, **changes: str | None) -> CallEvent:
    content = urlencode(params_of(name, **changes)).encode()
    [event] = TwilioProvider().parse(request(content, ARRIVALS.get(name, 0)), None)
    return event


def record_from(events: list[CallEvent], call: dict[str, Any], recordings: Any) -> dict[str, Any]:
    """The record the pipeline builds for these callbacks and these API answers."""
    return assembled_record(
        fold([(f"evt_{index}", event) for index, event in enumerate(events)]),
        call_details(call, recordings),
        provider="twilio",
        source="twilio-prod",
        provider_call_id=CA,
        at=RECEIVED + timedelta(seconds=80),
    )


NAMES = (*CALLBACKS, "recording_completed")


def test_recorded_payloads_give_the_expected_record() -> None:
    record = record_from([parsed(name) for name in NAMES], api("call"), api("recordings"))

    assert record == api("expected_record")


def test_the_order_callbacks_arrive_in_does_not_change_the_record() -> None:
    events = [parsed(name) for name in NAMES]
    expected = api("expected_record")

    records = [
        record_from(list(order), api("call"), api("recordings"))
        for order in itertools.permutations(events)
    ]

    assert all(record == expected for record in records)


def test_a_callback_is_keyed_by_call_sequence_and_status_a_recording_by_its_sid() -> None:
    keys = [parsed(name).dedupe_key for name in NAMES]

    assert keys == [
        f"{CA}:call:0:initiated",
        f"{CA}:call:1:ringing",
        f"{CA}:call:2:in-progress",
        f"{CA}:call:3:completed",
        f"{CA}:recording:{RE}:completed",
    ]
    assert parsed("call_completed").dedupe_key == keys[3]  # a retry is the same event


@pytest.mark.parametrize(
    ("given", "status", "end_reason"),
    [
        ("no-answer", CallStatus.no_answer, "no_answer"),
        ("busy", CallStatus.busy, "busy"),
        ("failed", CallStatus.failed, "error"),
        ("canceled", CallStatus.canceled, "other"),
    ],
)
def test_an_unanswered_call_maps_its_status_and_has_no_recording(
    given: str, status: CallStatus, end_reason: str
) -> None:
    final = parsed("call_completed", CallStatus=given, CallDuration="0", SipResponseCode="487")
    call = api("call") | {"status": given, "duration": None, "price": None}

    record = record_from([parsed("call_initiated"), parsed("call_ringing"), final], call, None)

    assert (final.status, final.terminal) == (status, True)
    assert {
        key: record[key]
        for key in ("status", "end_reason", "end_reason_raw", "answered_at", "duration_s", "cost")
    } == {
        "status": status.value,
        "end_reason": end_reason,
        "end_reason_raw": given,
        "answered_at": None,
        "duration_s": 0.0,
        "cost": None,
    }
    assert record["recording"] == {
        "status": "none",
        "url": None,
        "dual_url": None,
        "available_at": None,
        "archive": None,
    }
    assert record["ring_duration_s"] == 69.0  # ringing until Twilio gave up


def test_an_absent_recording_is_missing_without_waiting() -> None:
    absent = parsed("recording_completed", RecordingStatus="absent", RecordingUrl=None)
    processing = api("recordings")
    processing["recordings"][0] |= {"status": "processing", "duration": "-1"}
    events = [parsed(name) for name in CALLBACKS]

    waiting = record_from(events, api("call"), processing)
    given_up = record_from([*events, absent], api("call"), processing)

    assert (absent.enrich, absent.dedupe_key) == (
        {"recording": {"status": "missing"}},
        f"{CA}:recording:{RE}:absent",
    )
    assert (waiting["recording"]["status"], given_up["recording"]["status"]) == (
        "pending",
        "missing",
    )


def test_the_recordings_api_says_pending_none_missing_or_where_the_longest_file_is() -> None:
    item = api("recordings")["recordings"][0]
    short = item | {"duration": "3", "uri": item["uri"].replace(RE, "RE" + "0" * 32)}
    external = item | {"media_url": "https://media.example.com/rec/1.mp3", "channels": 1}
    base = "http://127.0.0.1:9"

    assert [
        recording_of(given, base)
        for given in (
            {"recordings": [item | {"status": "processing"}]},
            {"recordings": []},
            {"recordings": [item | {"status": "absent"}]},
            {"recordings": [short, item]},
            [external],
        )
    ] == [
        Recording(status="pending"),
        Recording(status="none"),
        Recording(status="missing"),
        Recording(
            status="available",
            url=f"{base}/2010-04-01/Accounts/{AC}/Recordings/{RE}.wav",
            dual_url=f"{base}/2010-04-01/Accounts/{AC}/Recordings/{RE}.wav",
        ),
        Recording(status="available", url="https://media.example.com/rec/1.mp3"),
    ]


@pytest.mark.parametrize(
    ("price", "unit", "cost"),
    [
        (None, "USD", None),
        ("-0.0130", "USD", {"total": 0.013, "currency": "USD", "telephony": 0.013}),
        ("-0.85", "eur", {"total": 0.85, "currency": "EUR", "telephony": 0.85}),
    ],
)
def test_a_negative_price_is_a_cost_and_none_yet_is_unknown(
    price: str | None, unit: str, cost: dict[str, Any] | None
) -> None:
    details = call_details(api("call") | {"price": price, "price_unit": unit}, None)

    assert (details.cost.model_dump(exclude_none=True) if details.cost else None) == cost


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("inbound", "inbound"),
        ("outbound-api", "outbound"),
        ("outbound-dial", "outbound"),
        ("trunking-originating", "inbound"),
        ("trunking-terminating", "outbound"),
    ],
)
def test_directions(direction: str, expected: str) -> None:
    assert parsed("call_ringing", Direction=direction).fields.direction == expected
    assert call_details(api("call") | {"direction": direction}, None).direction == expected


def test_a_machine_answering_ends_in_voicemail_and_errors_are_kept() -> None:
    completed = parsed("call_completed", AnsweredBy="machine_end_beep", ErrorCode="13227")
    amd_only = {"AccountSid": AC, "CallSid": CA, "AnsweredBy": "machine_start"}
    [async_amd] = TwilioProvider().parse(request(urlencode(amd_only).encode()), None)
    human = parsed("call_answered", AnsweredBy="human")
    call = api("call") | {"answered_by": "machine_end_beep"}

    record = record_from([parsed(name) for name in NAMES[:3]] + [completed], call, None)

    assert completed.enrich == {
        "end_reason": "voicemail",
        "end_reason_raw": "machine_end_beep",
        "errors": [{"type": "twilio_13227"}],
    }
    assert (async_amd.type, async_amd.status, async_amd.enrich) == (
        "amd.machine_start",
        None,
        {"end_reason": "voicemail", "end_reason_raw": "machine_start"},
    )
    assert human.enrich is None
    assert (record["end_reason"], record["end_reason_raw"], record["errors"]) == (
        "voicemail",
        "machine_end_beep",
        [CallError(type="twilio_13227").model_dump()],
    )


def test_the_json_variant_parses_like_the_form() -> None:
    params = params_of("call_completed")
    content = json.dumps(params).encode()
    url = f"{PUBLIC}/webhooks/t?bodySHA256={hashlib.sha256(content).hexdigest()}"
    json_request = request(content, ARRIVALS["call_completed"], url=url)

    [event] = TwilioProvider().parse(json_request, None)

    assert event == parsed("call_completed")


# ---------------------------------------------------------------- signatures: Twilio's validator

SIGNED_PATH = "/webhooks/whk_abc?source=prod"


@pytest.mark.parametrize(
    ("signed_for", "arrives_as", "valid"),
    [
        (PUBLIC + SIGNED_PATH, PUBLIC + SIGNED_PATH, True),
        (PUBLIC + SIGNED_PATH, "https://calls.example.com:443" + SIGNED_PATH, True),
        ("https://calls.example.com:443" + SIGNED_PATH, PUBLIC + SIGNED_PATH, True),
        (
            "http://calls.example.com" + SIGNED_PATH,
            "http://calls.example.com:80" + SIGNED_PATH,
            True,
        ),
        ("http://10.0.0.5:8000" + SIGNED_PATH, PUBLIC + SIGNED_PATH, False),
        (PUBLIC + "/webhooks/whk_abc", PUBLIC + SIGNED_PATH, False),
        (PUBLIC + SIGNED_PATH, "https://other.example.com" + SIGNED_PATH, False),
    ],
)
def test_our_verifier_agrees_with_twilios_request_validator(
    signed_for: str, arrives_as: str, valid: bool
) -> None:
    validator = RequestValidator(TOKEN)
    params = params_of("call_completed")
    signature = validator.compute_signature(signed_for, params)

    ours = signature_valid(TOKEN.encode(), arrives_as, urlencode(params).encode(), signature)

    assert (ours, validator.validate(arrives_as, params, signature)) == (valid, valid)


def test_twilios_validator_accepts_what_the_simulator_signs() -> None:
    validator = RequestValidator(TOKEN)
    url = PUBLIC + SIGNED_PATH
    calls = [make_call(random.Random(seed), RECEIVED) for seed in range(12)]
    bodies = [body for call in calls for _, body in simulated.timed_webhooks(call, True)]

    checks = []
    for body in bodies:
        content, headers = simulated.signed_form(TOKEN, body, 0.0, url)
        params = dict(parse_qsl(content.decode(), keep_blank_values=True))
        signature = headers["x-twilio-signature"]
        checks.append(
            (
                validator.validate(url, params, signature),
                signature_valid(TOKEN.encode(), url, content, signature),
                RequestValidator("another-token").validate(url, params, signature),
            )
        )

    assert headers["content-type"] == FORM
    assert {body["CallStatus"] for body in bodies if "CallStatus" in body} >= {
        "initiated",
        "ringing",
        "in-progress",
        "completed",
        "no-answer",
    }
    assert checks == [(True, True, False)] * len(bodies)


def test_the_body_sha256_variant_both_ways() -> None:
    validator = RequestValidator(TOKEN)
    body = params_of("call_completed")
    content, headers, url = simulated.signed_json(TOKEN, body, 0.0, PUBLIC + SIGNED_PATH)
    twilios = validator.compute_signature(url, {})
    tampered = content.replace(b"completed", b"canceled")

    assert url == f"{PUBLIC}{SIGNED_PATH}&bodySHA256={hashlib.sha256(content).hexdigest()}"
    assert headers["x-twilio-signature"] == twilios
    assert validator.validate(url, content.decode(), headers["x-twilio-signature"])
    assert signature_valid(TOKEN.encode(), url, content, twilios)
    assert not validator.validate(url, tampered.decode(), twilios)
    assert not signature_valid(TOKEN.encode(), url, tampered, twilios)


# ---------------------------------------------------------------- through the receiver


def twilio_source(
    client: TestClient, key: str, credentials: dict[str, str] | None = None, **settings: str
) -> dict[str, Any]:
    response = client.post(
        "/api/sources",
        json={
            "name": "twilio-prod",
            "provider": "twilio",
            "settings": settings,
            "credentials": credentials or {"account_sid": AC, "auth_token": TOKEN},
        },
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()
    return source


def signed_for(url: str, params: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    """Headers as Twilio sends them, signed by Twilio's own SDK."""
    signature = RequestValidator(token).compute_signature(url, params)
    return {"content-type": FORM, "x-twilio-signature": signature}


def post(client: TestClient, source: dict[str, Any], name: str, **changes: str | None) -> Any:
    params = params_of(name, **changes)
    headers = signed_for(source["webhook_url"], params)
    return client.post(path_of(source["webhook_url"]), content=urlencode(params), headers=headers)


@pytest.mark.parametrize(
    ("token", "tamper", "status"),
    [(TOKEN, False, 202), (TOKEN, True, 401), ("f" * 32, False, 401), (None, False, 401)],
)
def test_signature_accepted_tampered_wrong_token_or_missing(
    client: TestClient, token: str | None, tamper: bool, status: int
) -> None:
    source = twilio_source(client, create_org(client))
    params = params_of("call_completed")
    headers = signed_for(source["webhook_url"], params, token) if token else {"content-type": FORM}
    sent = params | {"CallDuration": "6200"} if tamper else params

    response = client.post(path_of(source["webhook_url"]), content=urlencode(sent), headers=headers)

    assert response.status_code == status
    if status == 401:
        assert response.headers["content-type"] == "application/problem+json"


def test_a_request_at_an_internal_address_verifies_against_the_public_url(
    client: TestClient,
) -> None:
    source = twilio_source(client, create_org(client))
    path = path_of(source["webhook_url"])
    params = params_of("call_ringing")
    internal = str(client.base_url) + path  # where the proxy delivers it: http://testserver/…

    as_twilio_signs = client.post(
        path, content=urlencode(params), headers=signed_for(PUBLIC + path, params)
    )
    as_it_arrives = client.post(
        path, content=urlencode(params), headers=signed_for(internal, params)
    )

    assert source["webhook_url"] == PUBLIC + path
    assert (as_twilio_signs.status_code, as_it_arrives.status_code) == (202, 401)
    assert "CALLWATCH_PUBLIC_URL" in as_it_arrives.json()["detail"]


def test_a_json_body_is_signed_through_body_sha256(client: TestClient) -> None:
    source = twilio_source(client, create_org(client))
    params = params_of("call_completed")
    content, headers, url = simulated.signed_json(TOKEN, params, 0.0, source["webhook_url"])
    sent_to = url.removeprefix(PUBLIC)

    accepted = client.post(sent_to, content=content, headers=headers)
    tampered = client.post(sent_to, content=content.replace(b"62", b"63"), headers=headers)
    unhashed = client.post(path_of(source["webhook_url"]), content=content, headers=headers)

    assert [accepted.status_code, tampered.status_code, unhashed.status_code] == [202, 401, 401]


def test_a_shared_key_signs_with_the_algorithm_its_setting_names(client: TestClient) -> None:
    shared = "webhooks-shared-key-secret"
    credentials = {"account_sid": AC, "auth_token": TOKEN, "webhook_signing_key": shared}
    source = twilio_source(client, create_org(client), credentials)
    params = params_of("call_ringing")
    url = source["webhook_url"]
    setting = {"x-twilio-webhooks-signature-settings": "key=wsk_1,algorithm=HMAC_SHA256"}

    def sent(key: str, extra: dict[str, str]) -> int:
        signature = RequestValidator(key).compute_signature(url, params, "HMAC_SHA256")
        headers = {"content-type": FORM, "x-twilio-signature": signature, **extra}
        return client.post(path_of(url), content=urlencode(params), headers=headers).status_code

    assert [sent(shared, setting), sent(TOKEN, setting), sent(shared, {})] == [202, 401, 401]


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"CallStatus": "completed"}, 422, "CallSid"),
        ({"CallSid": "CA-not-a-sid", "CallStatus": "completed"}, 422, "CallSid"),
        ({"CallSid": CA, "CallStatus": "exploded"}, 422, "CallStatus"),
        ({"CallSid": CA, "Caller": "+14155550100"}, 422, "CallStatus"),
        ({"CallSid": CA, "CallStatus": "ringing", "Timestamp": "yesterday"}, 422, "Timestamp"),
        ({"CallSid": CA, "CallStatus": "completed", "CallDuration": "long"}, 422, "CallDuration"),
        ({"CallSid": CA, "RecordingSid": RE, "RecordingStatus": "completed"}, 422, "RecordingUrl"),
        ({"CallSid": CA, "CallStatus": "ringing", "From": "+1\x00"}, 422, "body"),
    ],
)
def test_malformed_callbacks_are_a_clear_4xx(
    client: TestClient, params: dict[str, str], status: int, field: str
) -> None:
    source = twilio_source(client, create_org(client))
    headers = signed_for(source["webhook_url"], params)

    response = client.post(
        path_of(source["webhook_url"]), content=urlencode(params), headers=headers
    )

    assert (response.status_code, response.json().get("field")) == (status, field)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"CallSid"'])
def test_a_signed_json_body_that_is_no_object_is_400(client: TestClient, content: bytes) -> None:
    source = twilio_source(client, create_org(client))
    url = f"{source['webhook_url']}?bodySHA256={hashlib.sha256(content).hexdigest()}"
    headers = {
        "content-type": "application/json",
        "x-twilio-signature": RequestValidator(TOKEN).compute_signature(url, {}),
    }

    response = client.post(url.removeprefix(PUBLIC), content=content, headers=headers)

    assert response.status_code == 400


def test_a_form_body_that_is_not_utf8_is_400(client: TestClient) -> None:
    source = twilio_source(client, create_org(client))
    headers = {"content-type": FORM, "x-twilio-signature": "c2lnbmF0dXJl"}

    response = client.post(path_of(source["webhook_url"]), content=b"\xff\xfe", headers=headers)

    assert response.status_code == 400


@pytest.mark.parametrize(
    ("credentials", "field"),
    [
        ({"account_sid": AC}, "credentials.auth_token"),
        ({"account_sid": "ACnope", "auth_token": TOKEN}, "credentials.account_sid"),
        ({"auth_token": TOKEN, "api_key_sid": "SK" + "0" * 32}, "credentials.api_key_secret"),
    ],
)
def test_a_source_needs_the_auth_token_and_well_formed_credentials(
    client: TestClient, credentials: dict[str, str], field: str
) -> None:
    response = client.post(
        "/api/sources",
        json={"name": "twilio", "provider": "twilio", "credentials": credentials},
        headers={"authorization": f"Bearer {create_org(client)}"},
    )

    assert (response.status_code, response.json()["field"]) == (422, field)


# ---------------------------------------------------------------- end to end


class TwilioApi(BackgroundServer):
    """Twilio's Calls and Recordings API on loopback, behind HTTP Basic auth; the recording is
    `processing` for the first `processing` polls (None: for ever)."""

    def __init__(self, user: str, password: str, *, processing: int | None = 0) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self._basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._processing = processing
        prefix = "/2010-04-01/Accounts/{account}/Calls/{sid}"
        routes = [
            Route(prefix + ".json", self._call),
            Route(prefix + "/Recordings.json", self._recordings),
        ]
        super().__init__(Starlette(routes=routes))

    def _refused(self, request: Request) -> Response | None:
        self.requests.append((request.url.path, request.headers.get("authorization")))
        if request.headers.get("authorization") != self._basic:
            body = {"code": 20003, "message": "Authenticate", "status": 401}
            return JSONResponse(body, status_code=401)
        return None

    async def _call(self, request: Request) -> Response:
        return self._refused(request) or JSONResponse(api("call"))

    async def _recordings(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        polls = sum(path.endswith("/Recordings.json") for path, _ in self.requests)
        answer = api("recordings")
        if self._processing is None or polls <= self._processing:
            answer["recordings"][0] |= {"status": "processing", "duration": "-1"}
        return JSONResponse(answer)


def assembled_with_all(record: dict[str, Any]) -> bool:
    return record["assembly"]["state"] == "assembled" and len(record["timeline"]) == 5


VOLATILE = ("id", "org_id", "timeline", "assembly", "updated_at", "recording")
API_KEY = "SK" + "4d" * 16


@pytest.mark.parametrize(
    ("credentials", "basic"),
    [
        ({"account_sid": AC, "auth_token": TOKEN}, (AC, TOKEN)),
        ({"auth_token": TOKEN}, (AC, TOKEN)),  # the account named by the callbacks
        ({"auth_token": TOKEN, "api_key_sid": API_KEY, "api_key_secret": "k3y"}, (API_KEY, "k3y")),
    ],
)
def test_callbacks_out_of_order_and_repeated_make_one_record(
    client: TestClient, worker: None, credentials: dict[str, str], basic: tuple[str, str]
) -> None:
    key = create_org(client)
    arrival = [
        "recording_completed",  # before the call's own completed callback
        "call_completed",  # before ringing and answered
        "call_ringing",
        "call_completed",
        "call_initiated",
        "recording_completed",
        "call_answered",
    ]
    with TwilioApi(*basic) as twilio_api:
        source = twilio_source(client, key, credentials, api_base_url=twilio_api.url)
        replies = [post(client, source, name).json()["status"] for name in arrival]
        record = wait_for_call(client, key, CA, assembled_with_all)

    expected = api("expected_record")
    assert replies == ["accepted"] * 3 + ["duplicate", "accepted", "duplicate", "accepted"]
    assert {k: v for k, v in record.items() if k not in VOLATILE} == {
        k: v for k, v in expected.items() if k not in VOLATILE
    }
    assert {k: record["recording"][k] for k in ("status", "url", "dual_url")} == {
        k: expected["recording"][k] for k in ("status", "url", "dual_url")
    }
    assert sorted(entry["event"] for entry in record["timeline"]) == sorted(
        entry["event"] for entry in expected["timeline"]
    )
    call_path = f"/2010-04-01/Accounts/{AC}/Calls/{CA}"
    assert {path for path, _ in twilio_api.requests} == {
        f"{call_path}.json",
        f"{call_path}/Recordings.json",
    }
    assert {auth for _, auth in twilio_api.requests} == {twilio_api._basic}


def test_credentials_twilio_refuses_fail_the_assembly_visibly(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)
    with TwilioApi(AC, "the-real-token") as twilio_api:
        source = twilio_source(client, key, api_base_url=twilio_api.url)
        assert post(client, source, "call_completed").status_code == 202
        record = wait_for_call(client, key, CA, lambda r: r["assembly"]["state"] == "failed")
        refused = f"GET {twilio_api.url}/2010-04-01/Accounts/{AC}/Calls/{CA}.json: HTTP 401"

    assert record["assembly"]["last_error"] == refused
    assert len(twilio_api.requests) == 1  # a refusal is not retried


@pytest.mark.parametrize(
    ("callback", "processing", "recording"),
    [
        # The recording callback says `absent`: missing at once, not after the whole wait.
        ({"RecordingStatus": "absent", "RecordingUrl": None}, None, "missing"),
        # No recording callback configured: the Recordings list is polled until it is ready.
        (None, 2, "available"),
    ],
)
def test_the_recording_is_waited_for_through_callback_or_api(
    client: TestClient,
    settings: Settings,
    worker: None,
    monkeypatch: pytest.MonkeyPatch,
    callback: dict[str, str | None] | None,
    processing: int | None,
    recording: str,
) -> None:
    monkeypatch.setattr(settings, "recording_wait_s", 120.0)  # the worker's settings are these
    key = create_org(client)
    with TwilioApi(AC, TOKEN, processing=processing) as twilio_api:
        source = twilio_source(client, key, api_base_url=twilio_api.url)
        started = time.monotonic()
        for name in CALLBACKS:
            assert post(client, source, name).status_code == 202
        if callback is not None:
            assert post(client, source, "recording_completed", **callback).status_code == 202
        record = wait_for_call(client, key, CA, lambda r: r["assembly"]["state"] == "assembled")
        waited = time.monotonic() - started
        polled_url = f"{twilio_api.url}/2010-04-01/Accounts/{AC}/Recordings/{RE}.wav"

    polls = [path for path, _ in twilio_api.requests if path.endswith("/Recordings.json")]
    assert record["recording"]["status"] == recording
    assert waited < 30
    if recording == "available":
        assert (record["recording"]["url"], len(polls)) == (polled_url, 3)


# ---------------------------------------------------------------- the simulator


def test_simulated_calls_behind_a_proxy_are_assembled_from_the_simulated_api(
    settings: Settings,
    runtime: Runtime,
    worker: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "recording_wait_s", 15.0)  # simulated recordings take ≤ 5 s
    app = create_app(settings)
    with TestClient(app) as client, BackgroundServer(app) as web, DetailServer() as details:
        key = create_org(client)
        source = twilio_source(client, key, api_base_url=details.api_base_url("twilio"))
        played = run_simulation(  # the request reaches callwatch on an internal address …
            web.url + path_of(source["webhook_url"]),
            TOKEN,
            calls=8,
            rate=50,
            seed=7,
            server=details,
            play_s=0.3,
            provider="twilio",
            signed_url=source["webhook_url"],  # … signed for the public URL Twilio was given
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            items = client.get("/api/calls", headers={"authorization": f"Bearer {key}"}).json()
            if len(items["items"]) == 8 and all(
                item["assembly"]["state"] == "assembled" for item in items["items"]
            ):
                break
            time.sleep(0.3)
        records = [
            client.get(f"/api/calls/{item['id']}", headers={"authorization": f"Bearer {key}"})
            for item in items["items"]
        ]
        recordings = details.url + "/recordings/"

    found = [record.json() for record in records]
    assert (played.calls_done, played.rejected, played.errors) == (8, {}, 0)
    assert played.accepted == played.sent
    assert sorted(r["status"] for r in found) == sorted(
        ["no_answer", "failed", "canceled"] + ["completed"] * 5
    )
    for record in found:
        assert record["assembly"]["state"] == "assembled"
        assert record["metadata"] == {"account_sid": simulated.ACCOUNT_SID}
        if record["status"] == "completed":
            assert record["recording"]["status"] == "available"
            assert record["recording"]["url"].startswith(recordings)
            assert record["duration_s"] > 0
            assert record["cost"]["total"] == record["cost"]["telephony"] > 0
        else:
            assert (record["recording"]["status"], record["cost"]) == ("none", None)
            assert record["end_reason"] == UNANSWERED_END[record["status"]]


class _Later:
    """An ASGI app set once the server's address is known (the URL Twilio signs)."""

    app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


def test_callwatch_simulate_posts_callbacks_signed_for_the_url_it_posts_to(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    later = _Later()
    with BackgroundServer(later) as web:
        address = web.url
        app = create_app(settings.model_copy(update={"public_url": address}))
        later.app = app
        with TestClient(app) as client:
            key = create_org(client)
            source = twilio_source(client, key)
            code = main(
                [
                    "simulate",
                    "--url",
                    source["webhook_url"],
                    "--secret",
                    TOKEN,
                    "--provider",
                    "twilio",
                    "--calls",
                    "3",
                    "--rate",
                    "50",
                    "--seed",
                    "7",
                ]
            )

    progress = capsys.readouterr().err.strip().splitlines()[-1]
    assert source["webhook_url"].startswith(address)
    assert code == 0, progress
    assert "rejected 0  errors 0" in progress


def test_the_simulated_api_answers_what_the_adapter_maps_back() -> None:
    calls = [make_call(random.Random(seed), RECEIVED) for seed in range(30)]
    answered = next(call for call in calls if call.answered_at is not None)
    unanswered = next(call for call in calls if call.answered_at is None)
    ready = Recording(status="available", url="http://sim/recordings/x.wav")

    details = call_details(
        simulated.call_json(answered, ready), simulated.recordings_json(answered, ready)
    )
    nothing = call_details(simulated.call_json(unanswered, Recording(status="none")), None)
    processing = call_details(
        simulated.call_json(answered, Recording()), simulated.recordings_json(answered, Recording())
    )

    cost = answered.detail.cost
    assert cost is not None
    assert (details.status, details.direction, details.from_number, details.to_number) == (
        CallStatus.completed,
        answered.direction,
        answered.from_number,
        answered.to_number,
    )
    assert details.duration_s == round(answered.detail.duration_s or 0)
    assert details.ended_at == answered.ended_at.replace(microsecond=0)
    assert details.recording == Recording(
        status="available",
        url="http://sim/recordings/x.wav",
        dual_url="http://sim/recordings/x.wav",
    )
    assert details.cost is not None
    assert details.cost.total == cost.telephony
    assert (nothing.status, nothing.end_reason, nothing.cost) == (
        unanswered.status,
        unanswered.detail.end_reason,
        None,
    )
    assert processing.recording == Recording(status="pending")
