"""Burki: recorded payloads to the exact record, reports without a call id, and end to end."""

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from callwatch.calls.fold import fold
from callwatch.model.events import CallStatus, NumberMatch
from callwatch.model.records import Recording
from callwatch.providers.base import WebhookRequest
from callwatch.providers.burki import BurkiProvider, call_details
from callwatch.settings import Settings
from callwatch.simulator import BackgroundServer
from tests.conftest import create_org
from tests.factories import (
    assembled_record,
    in_state,
    post_unsigned,
    wait_for_call,
    webhook_request,
)

PAYLOADS = Path(__file__).parent.parent / "payloads" / "burki"
RECEIVED = datetime(2026, 4, 14, 16, 2, 11, 900000, tzinfo=UTC)
SID = "CA3f9a0c2e5b7d41e68c0a9b1d2e3f4a5b"
WEBHOOKS = ("status_update", "end_of_call_report")
ARRIVALS = {"status_update": 0, "end_of_call_report": 63}


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def request(body: bytes, after_s: float = 0) -> WebhookRequest:
    return webhook_request(body, RECEIVED + timedelta(seconds=after_s))


def parsed(name: str, body: Any = None) -> Any:
    given = payload(name) if body is None else body
    [event] = BurkiProvider().parse(request(json.dumps(given).encode(), ARRIVALS[name]), None)
    return event


def record_from(call: dict[str, Any] | None, recordings: list[dict[str, Any]]) -> dict[str, Any]:
    """The record the pipeline builds once the report has found its call (by the SID)."""
    events = [(f"evt_{name}", parsed(name)) for name in WEBHOOKS]
    events = [(key, event.model_copy(update={"provider_call_id": SID})) for key, event in events]
    details = call_details(call, recordings) if call else None
    return assembled_record(
        fold(events),
        details,
        provider="burki",
        source="burki-prod",
        provider_call_id=SID,
        at=RECEIVED,
    )


def test_recorded_payloads_give_the_expected_record() -> None:
    assert record_from(payload("call"), payload("recordings")) == payload("expected_record")


def test_the_report_names_no_call_but_both_numbers() -> None:
    event = parsed("end_of_call_report")

    assert (event.provider_call_id, event.match, event.status, event.terminal) == (
        "",
        NumberMatch(our_number="+14155550142", customer_number="+14155550177"),
        CallStatus.completed,
        True,
    )


def test_the_status_update_names_the_twilio_sid_and_the_numbers() -> None:
    event = parsed("status_update")

    assert (event.provider_call_id, event.status, event.fields.model_dump()) == (
        SID,
        CallStatus.in_progress,
        {
            "agent_id": None,
            "agent_name": None,
            "campaign_id": None,
            "direction": "inbound",
            "channel": "phone",
            "from_number": "+14155550177",
            "to_number": "+14155550142",
            "customer_number": "+14155550177",
            "metadata": {},
        },
    )


@pytest.mark.parametrize(
    ("event", "status", "terminal"),
    [("call_started", CallStatus.in_progress, False), ("call_ended", CallStatus.completed, True)],
)
def test_the_flat_shape_from_the_webhook_log_docs(
    event: str, status: CallStatus, terminal: bool
) -> None:
    body = json.dumps({"event": event, "call_sid": SID, "timestamp": "2026-04-14T16:02:11Z"})

    [parsed_event] = BurkiProvider().parse(request(body.encode()), None)

    assert (parsed_event.provider_call_id, parsed_event.status, parsed_event.terminal) == (
        SID,
        status,
        terminal,
    )


def test_recordings_still_processing_leave_the_recording_pending() -> None:
    processing = [dict(payload("recordings")[0], status="processing")]

    assert call_details(payload("call"), processing).recording == Recording(status="pending")


# ----------------------------------------------------------------- through the receiver


def burki_source(client: TestClient, key: str, **settings: Any) -> dict[str, Any]:
    response = client.post(
        "/api/sources",
        json={
            "name": "burki-prod",
            "provider": "burki",
            "settings": settings,
            "credentials": {"api_key": "burki-api-key"},
        },
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()
    return source


def test_unsigned_a_wrong_token_is_404_and_a_disallowed_address_401(client: TestClient) -> None:
    key = create_org(client)
    open_source = burki_source(client, key)
    fenced = client.post(
        "/api/sources",
        json={"name": "fenced", "provider": "burki", "settings": {"allowed_ips": ["10.1.2.3"]}},
        headers={"authorization": f"Bearer {key}"},
    ).json()
    body = payload("status_update")

    assert [
        post_unsigned(client, open_source, body).status_code,
        post_unsigned(client, {"webhook_url": "x/whk_not_a_token"}, body).status_code,
        post_unsigned(client, fenced, body).status_code,
    ] == [202, 404, 401]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        ({"message": {"status": "in-progress"}}, 422, "message.type"),
        ({"message": {"type": "status-update", "status": "in-progress"}}, 422, "message.call.id"),
        ({"hello": "world"}, 422, "message"),
        ({"message": {"type": "hang"}}, 422, "message.type"),
    ],
)
def test_malformed_bodies_are_a_clear_4xx(
    client: TestClient, body: Any, status: int, field: str | None
) -> None:
    source = burki_source(client, create_org(client))

    response = post_unsigned(client, source, body)

    assert (response.status_code, response.json().get("field")) == (status, field)


class BurkiApi(BackgroundServer):
    """Burki's calls-by-SID API on loopback; recordings are `processing` for `processing` polls."""

    def __init__(self, calls: dict[str, dict[str, Any]], *, processing: int = 0) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self._calls, self._processing = calls, processing
        routes = [
            Route("/api/v1/calls/sid/{sid}", self._call),
            Route("/api/v1/calls/sid/{sid}/recordings", self._recordings),
            Route("/api/v1/calls/sid/{sid}/transcripts", self._transcripts),
        ]
        super().__init__(Starlette(routes=routes))

    async def _call(self, request: Request) -> JSONResponse:
        self.requests.append((request.url.path, request.headers.get("authorization")))
        return JSONResponse(self._calls[request.path_params["sid"]])

    async def _recordings(self, request: Request) -> JSONResponse:
        self.requests.append((request.url.path, request.headers.get("authorization")))
        polls = sum(path.endswith("/recordings") for path, _ in self.requests)
        items = payload("recordings")
        if polls <= self._processing:
            items = [dict(items[0], status="processing", recording_url=None)]
        return JSONResponse(items)

    async def _transcripts(self, request: Request) -> JSONResponse:
        self.requests.append((request.url.path, request.headers.get("authorization")))
        return JSONResponse(payload("transcripts"))


def other_call() -> dict[str, Any]:
    """A second caller on the same line at the same time: the report must not land on it."""
    return dict(
        payload("call"),
        call_sid="CA0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
        customer_phone_number="+14155550188",
    )


def status_update(sid: str, customer: str) -> dict[str, Any]:
    body = payload("status_update")
    body["message"]["call"] |= {"id": sid, "phoneCallProviderId": sid}
    body["message"]["call"]["customer"]["number"] = customer
    return body


VOLATILE = ("id", "org_id", "created_at", "timeline", "assembly", "updated_at", "recording")


def test_a_report_without_a_call_id_lands_on_its_call_with_the_polled_recording(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)
    other = other_call()
    with BurkiApi({SID: payload("call"), other["call_sid"]: other}, processing=2) as api:
        source = burki_source(client, key, api_base_url=api.url)
        assert post_unsigned(client, source, status_update(SID, "+14155550177")).status_code == 202
        assert (
            post_unsigned(
                client, source, status_update(other["call_sid"], "+14155550188")
            ).status_code
            == 202
        )
        wait_for_call(client, key, SID, in_state("pending"))
        wait_for_call(client, key, other["call_sid"], in_state("pending"))
        assert post_unsigned(client, source, payload("end_of_call_report")).status_code == 202
        record = wait_for_call(client, key, SID, in_state("assembled"))

    expected = payload("expected_record")
    assert {k: v for k, v in record.items() if k not in VOLATILE} == {
        k: v for k, v in expected.items() if k not in VOLATILE
    }
    assert record["recording"]["url"] == expected["recording"]["url"]
    recording_polls = [path for path, _ in api.requests if path.endswith("/recordings")]
    assert recording_polls == [f"/api/v1/calls/sid/{SID}/recordings"] * 3
    assert {auth for _, auth in api.requests} == {"Bearer burki-api-key"}
    other_record = client.get(
        f"/api/calls/{other['call_sid']}", headers={"authorization": f"Bearer {key}"}
    ).json()
    assert (other_record["status"], other_record["assembly"]["state"]) == ("in_progress", "pending")


def test_a_report_before_its_status_update_waits_for_it(client: TestClient, worker: None) -> None:
    from workers.tasks import sweep

    key = create_org(client)
    with BurkiApi({SID: payload("call")}) as api:
        source = burki_source(client, key, api_base_url=api.url)
        assert post_unsigned(client, source, payload("end_of_call_report")).status_code == 202
        time.sleep(0.5)  # the worker looks for the call, finds none, and leaves the report due
        assert post_unsigned(client, source, payload("status_update")).status_code == 202
        wait_for_call(client, key, SID, in_state("pending"))
        sweep.delay()
        record = wait_for_call(client, key, SID, in_state("assembled"))

    assert (record["end_reason"], record["recording"]["status"], record["cost"]["total"]) == (
        "user_hangup",
        "available",
        0.0912,
    )
    listed = client.get("/api/calls", headers={"authorization": f"Bearer {key}"}).json()
    assert [item["provider_call_id"] for item in listed["items"]] == [SID]


def test_a_report_that_never_finds_its_call_becomes_a_call_of_its_own(
    client: TestClient, settings: Settings, worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "match_wait_s", 0.0)  # the worker's settings are these
    key = create_org(client)
    source = burki_source(client, key)
    body = payload("end_of_call_report")
    assert post_unsigned(client, source, body).status_code == 202
    assert post_unsigned(client, source, body).json() == {"status": "duplicate"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = client.get("/api/calls", headers={"authorization": f"Bearer {key}"}).json()
        if listed["items"] and listed["items"][0]["assembly"]["state"] == "assembled":
            break
        time.sleep(0.1)

    [record] = listed["items"]
    assert (
        record["provider_call_id"].startswith("unmatched:"),
        record["customer_number"],
        record["duration_s"],
        record["recording"]["status"],
        record["analysis"]["data"],
    ) == (True, "+14155550177", 63.0, "missing", {"chat_topic": "hours", "booked": False})


def test_a_flat_shape_call_gets_its_transcript_from_the_api(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)
    with BurkiApi({SID: payload("call")}) as api:
        source = burki_source(client, key, api_base_url=api.url)
        for event, at in (("call_started", "16:02:11.204"), ("call_ended", "16:03:14.517")):
            flat = {"event": event, "call_sid": SID, "timestamp": f"2026-04-14T{at}Z"}
            assert post_unsigned(client, source, flat).status_code == 202
        record = wait_for_call(client, key, SID, in_state("assembled"))

    assert record["transcript"] == [
        {"role": role, "content": content, "start_s": start, "end_s": end}
        for role, content, start, end in (
            ("assistant", "Thanks for calling Harbor Dental, how can I help?", 0.6, 2.9),
            ("user", "What are your hours on Saturday?", 3.5, 5.4),
            ("assistant", "We are open nine to one on Saturdays.", 6.3, 8.6),
            ("user", "Great, thanks.", 9.1, 9.9),
        )
    ]
    assert (record["latency"]["turn"]["count"], record["interruptions"]["count"]) == (1, 0)
    assert (record["status"], record["duration_s"], record["ended_at"]) == (
        "completed",
        63.0,
        "2026-04-14T16:03:14.517000Z",
    )
    assert f"/api/v1/calls/sid/{SID}/transcripts" in [path for path, _ in api.requests]


def test_a_flat_timestamp_is_the_events_time_and_an_overlong_one_is_a_4xx(
    client: TestClient,
) -> None:
    body = {"event": "call_ended", "call_sid": SID, "timestamp": "2026-04-14T16:03:14.517Z"}
    [event] = BurkiProvider().parse(request(json.dumps(body).encode()), None)
    assert event.at == datetime(2026, 4, 14, 16, 3, 14, 517000, tzinfo=UTC)

    source = burki_source(client, create_org(client))
    rejected = post_unsigned(client, source, body | {"timestamp": "9" * 65})
    assert (rejected.status_code, "timestamp" in rejected.text) == (422, True)
