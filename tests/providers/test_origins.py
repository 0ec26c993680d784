"""Origins AI / Dialflo: recorded payloads to the exact record, statuses, intake, and end to end."""

import json
import random
import time
from datetime import UTC, datetime, timedelta
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
from callwatch.errors import ProviderRejected, ProviderUnavailable
from callwatch.model.events import CallStatus
from callwatch.model.records import CallDetails
from callwatch.providers.base import FetchContext, SourceConfig, WebhookRequest
from callwatch.providers.origins.provider import OriginsProvider, fetched_details, pick
from callwatch.simulator import PLATFORMS, BackgroundServer, DetailServer, SimCall, make_call
from tests.conftest import create_org, path_of
from tests.factories import assembled_record, webhook_request

PAYLOADS = Path(__file__).parent.parent / "payloads" / "origins"
CALL_ID = "5b0f3c8e-2a71-4d9c-9e43-7f1a6c2d8b05"
ENDED = datetime(2025, 6, 25, 5, 27, 26, tzinfo=UTC)  # 10:57:26+05:30
RECEIVED = ENDED + timedelta(seconds=1)
API_KEY = "origins-api-key"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def request(body: bytes) -> WebhookRequest:
    return webhook_request(body, RECEIVED)


def parse(body: Any) -> Any:
    [event] = OriginsProvider().parse(request(json.dumps(body).encode()), None)
    return event


def source_config(**credentials: str) -> SourceConfig:
    return SourceConfig("src_1", "org_1", "dialflo-prod", "origins", {}, credentials)


def record_from(completion: dict[str, Any], details: CallDetails) -> dict[str, Any]:
    """The record the pipeline builds from this webhook and these fetched details."""
    state = fold([("evt_1", parse(completion))])
    return assembled_record(
        state,
        details,
        provider="origins",
        source="dialflo-prod",
        provider_call_id=CALL_ID,
        at=RECEIVED,
    )


def test_recorded_payloads_give_the_expected_record() -> None:
    completion = payload("completion")
    detail = parse(completion).detail

    record = record_from(completion, fetched_details(payload("call_details"), CALL_ID, detail))

    assert record == payload("expected_record")


def test_without_an_api_key_the_completion_is_the_detail() -> None:
    completion = payload("completion")
    context = FetchContext(CALL_ID, parse(completion).detail)

    with httpx.Client(transport=httpx.MockTransport(_no_requests)) as client:
        details = OriginsProvider().fetch(client, source_config(), context)
    record = record_from(completion, details)

    expected = payload("expected_record")
    same = ("status", "end_reason", "answered_at", "ended_at", "duration_s", "recording")
    assert {key: record[key] for key in same} == {key: expected[key] for key in same}
    assert (record["billed_duration_s"], record["transcript"], record["latency"]["llm"]) == (
        None,
        None,
        None,
    )
    assert record["analysis"]["data"]["call_insights"]["next_action"] == "NONE"
    assert record["metadata"] == {
        "origins": {"task_id": "90412", "call_triggered": True, "hangup_source": "Callee"}
    }


def _no_requests(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected request {request.url}")


@pytest.mark.parametrize(
    ("call_status", "cause", "status", "terminal", "end_reason"),
    [
        ("ANSWERED", "Normal Hangup", CallStatus.completed, True, "user_hangup"),
        ("FAILED", "Busy Line", CallStatus.busy, True, "busy"),
        ("FAILED", "Rejected", CallStatus.busy, True, "busy"),
        ("FAILED", "No Answer", CallStatus.no_answer, True, "no_answer"),
        ("FAILED", "Ring Timeout Reached", CallStatus.no_answer, True, "no_answer"),
        ("FAILED", "Canceled", CallStatus.canceled, True, "other"),
        ("FAILED", "Cancelled (Out Of Credits)", CallStatus.canceled, True, "other"),
        ("FAILED", "Destination Out Of Service", CallStatus.failed, True, "error"),
        ("FAILED", None, CallStatus.failed, True, "error"),
        ("NO_ANSWER", None, CallStatus.no_answer, True, "no_answer"),
        ("busy", None, CallStatus.busy, True, "busy"),
        ("INITIATED", None, CallStatus.initiated, False, None),
        ("QUEUED", None, CallStatus.queued, False, None),
    ],
)
def test_status_mapping(
    call_status: str, cause: str | None, status: CallStatus, terminal: bool, end_reason: str | None
) -> None:
    body = payload("completion") | {"call_status": call_status, "hangup_cause_name": cause}

    event = parse(body)

    got_reason = event.detail["end_reason"] if event.detail else None
    assert (event.status, event.terminal, got_reason) == (status, terminal, end_reason)


@pytest.mark.parametrize(
    ("source", "direction", "end_reason"),
    [
        ("Callee", "outbound", "user_hangup"),
        ("Call recipient", "inbound", "agent_hangup"),
        ("Caller", "outbound", "agent_hangup"),
        ("Caller", "inbound", "user_hangup"),
        ("API Request", "outbound", "agent_hangup"),
        ("Answer XML", "inbound", "agent_hangup"),
        ("customer", "inbound", "user_hangup"),
        ("Error", "outbound", "error"),
        ("Carrier", "outbound", "other"),
        ("Unknown", "outbound", None),
        ("Caller", None, None),
    ],
)
def test_end_reason_of_an_answered_call_from_the_hangup_source(
    source: str, direction: str | None, end_reason: str | None
) -> None:
    body = payload("completion") | {"hangup_source": source, "call_direction": direction}

    detail = parse(body).detail

    assert (detail.get("end_reason"), detail["end_reason_raw"]) == (end_reason, "Normal Hangup")


def test_plivo_local_timestamps_are_utc() -> None:
    body = payload("completion") | {"initiation_time": "2025-06-25T05:26:51Z"}

    event = parse(body)

    assert (event.at, event.detail["answered_at"], event.detail["initiated_at"]) == (
        ENDED,
        "2025-06-25T05:27:05Z",
        "2025-06-25T05:26:51Z",
    )


def test_a_timestamp_without_offset_is_utc() -> None:
    event = parse(payload("completion") | {"end_time": "2025-06-25 05:27:26"})

    assert event.at == ENDED


def test_the_dedupe_key_is_the_call_status_and_end_time() -> None:
    completion = payload("completion")
    same_in_utc = completion | {"end_time": "2025-06-25T05:27:26Z"}
    later = completion | {"end_time": "2025-06-25 10:57:27+05:30"}
    queued = completion | {"call_status": "QUEUED"}

    keys = [parse(body).dedupe_key for body in (completion, same_in_utc, later, queued)]

    assert keys[0] == keys[1]
    assert len(set(keys)) == 3


def test_a_one_element_array_is_the_call() -> None:
    completion = payload("completion")

    assert parse([completion]) == parse(completion)


def test_stage_latency_samples_in_milliseconds() -> None:
    call = payload("call_details")[1] | {
        "stt_data": [{"latency_ms": 210}, {"latency_s": 0.185}, 240, {"provider": "deepgram"}],
        "llm_data": [{"ttfb": 520}, {"ttfb_seconds": 0.61}],
        "tts_data": [],
    }

    details = fetched_details([call], CALL_ID, None)

    samples = details.latency_samples
    assert samples is not None
    assert (samples.stt, samples.llm, samples.tts) == ([210.0, 185.0, 240.0], [520.0, 610.0], [])


def test_transcript_timestamps_are_placed_against_the_answer() -> None:
    call = payload("call_details")[1] | {
        "call_transcription": [
            {"speaker": "bot", "text": "Hello!", "start_time": "2025-06-25 10:57:06+05:30"},
            {"speaker": "customer", "message": "Hi.", "start_time": "2025-06-25T05:27:08.5Z"},
            {"speaker": "narrator", "text": "(not a party to the call)"},
        ]
    }

    details = fetched_details([call], CALL_ID, None)

    assert [(u.role, u.content, u.start_s) for u in details.transcript or []] == [
        ("assistant", "Hello!", 1.0),
        ("user", "Hi.", 3.5),
    ]


def test_the_detail_response_is_searched_for_our_call() -> None:
    ours = payload("call_details")[1]
    unnamed = {key: value for key, value in ours.items() if key != "call_id"}

    assert pick(payload("call_details"), CALL_ID.upper()) == ours
    assert pick([unnamed], CALL_ID) == unnamed  # Dialflo's documented example names no call
    with pytest.raises(ProviderUnavailable, match="does not list call"):
        pick(payload("call_details")[:1], CALL_ID)
    for malformed in ({"error": "x"}, "calls", [1, 2], {"data": {"call_id": CALL_ID}}):
        with pytest.raises(ProviderRejected):
            pick(malformed, CALL_ID)
    with pytest.raises(ProviderRejected, match="schema"):
        fetched_details([ours | {"call_duration": "long"}], CALL_ID, None)


@pytest.mark.parametrize(
    ("known", "url"),
    [
        ({"task_id": 90412}, "https://api.dialflo.ai/call_details/90412"),
        ({"task_id": None}, "https://api.dialflo.ai/api/agents/27/call_stats"),
    ],
)
def test_fetch_asks_by_task_then_by_agent_with_the_key_in_both_headers(
    known: dict[str, Any], url: str
) -> None:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=payload("call_details"))

    detail = parse(payload("completion") | known).detail
    with httpx.Client(transport=httpx.MockTransport(api)) as client:
        details = OriginsProvider().fetch(
            client, source_config(api_key=API_KEY), FetchContext(CALL_ID, detail)
        )

    assert [(str(r.url), r.headers["auth_token"], r.headers["authorization"]) for r in seen] == [
        (url, f"Bearer {API_KEY}", f"Bearer {API_KEY}")
    ]
    assert details.billed_duration_s == 60.0


def test_fetch_without_ids_to_look_up_gives_up() -> None:
    detail = parse(payload("completion") | {"task_id": None, "agent_id": None}).detail

    with (
        httpx.Client(transport=httpx.MockTransport(_no_requests)) as client,
        pytest.raises(ProviderRejected, match="neither a task_id nor an agent_id"),
    ):
        OriginsProvider().fetch(
            client, source_config(api_key=API_KEY), FetchContext(CALL_ID, detail)
        )


def origins_source(client: TestClient, key: str, **settings: Any) -> dict[str, Any]:
    response = client.post(
        "/api/sources",
        json={
            "name": "dialflo-prod",
            "provider": "origins",
            "settings": settings,
            "credentials": {"api_key": API_KEY},
        },
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()
    return source


JSON = {"content-type": "application/json"}


def test_unsigned_webhooks_are_accepted_once_on_their_token(client: TestClient) -> None:
    source = origins_source(client, create_org(client))
    body = json.dumps(payload("completion")).encode()

    first = client.post(path_of(source["webhook_url"]), headers=JSON, content=body)
    again = client.post(path_of(source["webhook_url"]), headers=JSON, content=body)
    unknown = client.post("/webhooks/not-a-token", headers=JSON, content=body)

    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert (again.status_code, again.json()) == (202, {"status": "duplicate"})
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("allowed", "status"), [(["10.1.2.3"], 401), (["192.0.2.10"], 202), (["192.0.2.0/24"], 202)]
)
def test_the_sources_allowed_ips_are_enforced(
    client: TestClient, allowed: list[str], status: int
) -> None:
    source = origins_source(client, create_org(client), allowed_ips=allowed)
    # The same app (started by `client`), reached from a real address.
    sender = TestClient(client.app, raise_server_exceptions=False, client=("192.0.2.10", 50000))

    body = json.dumps(payload("completion")).encode()

    response = sender.post(path_of(source["webhook_url"]), headers=JSON, content=body)

    assert response.status_code == status


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"not json", 400, None),
        (b"", 422, None),
        (b"42", 422, None),
        (b"[]", 422, None),
        (b'{"call_status": "ANSWERED"}', 422, "call_id"),
        (b'{"call_id": "", "call_status": "ANSWERED"}', 422, "call_id"),
        (b'{"call_id": "c-1"}', 422, "call_status"),
        (b'{"call_id": "c-1", "call_status": "RINGING"}', 422, "call_status"),
        (b'{"call_id": "c-1", "call_status": 3}', 422, "call_status"),
        (b'{"call_id": "c-1", "call_status": "FAILED", "end_time": "yesterday"}', 422, "end_time"),
        (b'{"call_id": "c-1", "call_status": "FAILED", "end_time": 1750829246}', 422, "end_time"),
        (b'{"call_id": "c-1", "call_status": "FAILED", "call_duration": "long"}', 422, None),
        (b'[{"call_id": "c-1", "call_status": "FAILED"}, {"call_id": "c-2"}]', 422, None),
        (b'{"call_id": "c-\\u0000", "call_status": "FAILED"}', 422, "call_id"),
    ],
)
def test_malformed_bodies_get_a_4xx_naming_the_field(
    client: TestClient, body: bytes, status: int, field: str | None
) -> None:
    source = origins_source(client, create_org(client))

    response = client.post(path_of(source["webhook_url"]), headers=JSON, content=body)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if field is not None:
        assert response.json()["field"] == field


class OriginsApi(BackgroundServer):
    """Dialflo's `call_details/{task_id}` and Origins' `call_stats` on loopback."""

    def __init__(self, calls: list[dict[str, Any]]) -> None:
        self.requests: list[tuple[str, str | None, str | None]] = []
        self._calls = calls
        routes = [
            Route("/call_details/{task_id}", self._serve),
            Route("/api/agents/{agent_id}/call_stats", self._serve),
        ]
        super().__init__(Starlette(routes=routes))

    async def _serve(self, request: Request) -> JSONResponse:
        headers = request.headers
        self.requests.append(
            (request.url.path, headers.get("auth_token"), headers.get("authorization"))
        )
        return JSONResponse(self._calls)


@pytest.mark.parametrize(
    ("known", "path"),
    [({}, "/call_details/90412"), ({"task_id": None}, "/api/agents/27/call_stats")],
)
def test_end_to_end_through_the_worker(
    client: TestClient, worker: None, known: dict[str, Any], path: str
) -> None:
    key = create_org(client)
    with OriginsApi(payload("call_details")) as api:
        source = origins_source(client, key, api_base_url=api.url)
        body = json.dumps(payload("completion") | known).encode()
        response = client.post(path_of(source["webhook_url"]), headers=JSON, content=body)
        assert response.status_code == 202, response.text
        record = wait_for_record(client, key, CALL_ID)

    expected = payload("expected_record")
    volatile = ("id", "org_id", "created_at", "recording", "assembly", "updated_at", "timeline")
    assert {k: v for k, v in record.items() if k not in volatile} == {
        k: v for k, v in expected.items() if k not in volatile
    }
    assert (record["recording"]["url"], record["timeline"]) == (
        expected["recording"]["url"],
        expected["timeline"],
    )
    assert api.requests == [(path, f"Bearer {API_KEY}", f"Bearer {API_KEY}")]


def wait_for_record(client: TestClient, key: str, call_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = client.get(f"/api/calls/{call_id}", headers={"authorization": f"Bearer {key}"})
        if response.status_code == 200 and response.json()["assembly"]["state"] == "assembled":
            record: dict[str, Any] = response.json()
            return record
        time.sleep(0.1)
    raise AssertionError(f"{call_id} was not assembled")


SIMULATED = PLATFORMS["origins"]


def test_simulated_calls_assemble_as_the_simulator_made_them(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)
    with DetailServer() as server:
        source = origins_source(client, key, api_base_url=server.api_base_url("origins"))
        calls = one_call_per_outcome(server.url)
        for call in calls:
            server.add(call)
            for _, body in SIMULATED.webhooks(call, False):
                content, headers = SIMULATED.sign("", body, time.time())
                response = client.post(
                    path_of(source["webhook_url"]), content=content, headers=headers
                )
                assert response.status_code == 202, response.text
        records = [wait_for_record(client, key, call.call_id) for call in calls]

    assert [as_simulated(record) for record in records] == [made(call) for call in calls]
    assert [server.requests(call.call_id) for call in calls] == [1] * len(calls)


def one_call_per_outcome(recording_base: str) -> list[SimCall]:
    rng, now = random.Random(5), datetime.now(UTC)
    found: dict[tuple[CallStatus, str | None], SimCall] = {}
    while len(found) < 7:  # five statuses; completed ended three ways
        call = make_call(rng, now, recording_base=recording_base)
        found.setdefault((call.status, call.detail.end_reason), call)
    return list(found.values())


def as_simulated(record: dict[str, Any]) -> dict[str, Any]:
    stt = record["latency"]["stt"]
    return {
        "status": record["status"],
        "end_reason": record["end_reason"],
        "numbers": (record["from_number"], record["to_number"], record["customer_number"]),
        "ended_at": record["ended_at"],
        "durations": (record["duration_s"], record["billed_duration_s"]),
        "recording": (record["recording"]["status"], record["recording"]["url"]),
        "transcript": record["transcript"],
        "stt_samples": stt["count"] if stt else None,
        "summary": record["analysis"]["summary"] if record["analysis"] else None,
    }


def made(call: SimCall) -> dict[str, Any]:
    detail = call.detail
    ended = call.ended_at.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    stt = detail.latency_samples.stt if detail.latency_samples else []
    transcript = [turn.model_dump() for turn in detail.transcript or []]
    recording = detail.recording.url if detail.recording else None
    return {
        "status": call.status.value,
        "end_reason": "agent_hangup" if detail.end_reason == "transferred" else detail.end_reason,
        "numbers": (call.from_number, call.to_number, detail.customer_number),
        "ended_at": ended,
        "durations": (detail.duration_s, detail.billed_duration_s),
        "recording": ("available" if recording else "none", recording),
        "transcript": transcript or None,
        "stt_samples": len(stt) or None,
        "summary": detail.analysis.summary if detail.analysis else None,
    }
