"""Smallest.ai Atoms: recorded payloads to the exact record, signatures, and end to end."""

import hashlib
import hmac
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

from callwatch.calls import assembly
from callwatch.calls.fold import fold
from callwatch.model.events import CallStatus
from callwatch.providers.atoms import AtomsProvider, conversation_details
from callwatch.providers.base import WebhookRequest
from callwatch.simulator import BackgroundServer
from tests.conftest import create_org, path_of
from tests.factories import assembled_record, webhook_request

PAYLOADS = Path(__file__).parent.parent / "payloads" / "atoms"
RECEIVED = datetime(2026, 5, 8, 7, 51, 58, 500000, tzinfo=UTC)
WEBHOOKS = ("pre_conversation", "post_conversation", "analytics_completed")
# When each webhook arrives: the call is answered, ends, and is analysed 40 s later.
ARRIVALS = dict(zip(WEBHOOKS, (0, 51, 92), strict=True))


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def request(body: bytes, after_s: float = 0) -> WebhookRequest:
    return webhook_request(body, RECEIVED + timedelta(seconds=after_s))


def record_from(names: tuple[str, ...], conversation: dict[str, Any] | None) -> dict[str, Any]:
    """The record the pipeline builds from these webhooks and this detail response."""
    adapter = AtomsProvider()
    events = [
        (f"evt_{index}", event)
        for index, name in enumerate(names)
        for event in adapter.parse(
            request(json.dumps(payload(name)).encode(), ARRIVALS[name]), None
        )
    ]
    state = fold(events)
    details = conversation_details(conversation) if conversation else None
    return assembled_record(
        state,
        details or assembly.merge(state, None),
        provider="atoms",
        source="atoms-prod",
        provider_call_id="CALL-1778226718000-a1b2c3",
        at=RECEIVED,
    )


def test_recorded_payloads_give_the_expected_record() -> None:
    expected = payload("expected_record")

    assert record_from(WEBHOOKS, payload("conversation")["data"]) == expected


def test_analytics_after_the_call_changes_only_the_analysis() -> None:
    conversation = dict(payload("conversation")["data"], postCallAnalytics=None)
    without = record_from(WEBHOOKS[:2], conversation)
    with_analytics = record_from(WEBHOOKS, conversation)

    assert with_analytics["analysis"] == payload("expected_record")["analysis"]
    assert {
        key: value for key, value in with_analytics.items() if key not in ("analysis", "timeline")
    } == {key: value for key, value in without.items() if key not in ("analysis", "timeline")}


@pytest.mark.parametrize(
    ("given", "status"),
    [
        ("completed", CallStatus.completed),
        ("no-answer", CallStatus.no_answer),
        ("no_answer", CallStatus.no_answer),
        ("busy", CallStatus.busy),
        ("failed", CallStatus.failed),
        ("canceled", CallStatus.canceled),
        ("cancelled", CallStatus.canceled),
    ],
)
def test_both_status_spellings_are_understood(given: str, status: CallStatus) -> None:
    body = payload("post_conversation")
    body["metadata"]["callData"]["callStatus"] = given

    [event] = AtomsProvider().parse(request(json.dumps(body).encode()), None)

    assert (event.status, event.terminal) == (status, True)


def test_pre_conversation_phone_fields_are_the_numbers() -> None:
    [event] = AtomsProvider().parse(request(json.dumps(payload("pre_conversation")).encode()), None)

    assert (event.fields.from_number, event.fields.to_number, event.at, event.dedupe_key) == (
        "+14155550100",
        "+14155550199",
        RECEIVED,
        "66ff0000000000000000a001",
    )


SECRET = "atoms-webhook-secret"


def signed_by(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-signature": digest}


def atoms_source(client: TestClient, key: str, **settings: str) -> dict[str, Any]:
    response = client.post(
        "/api/sources",
        json={
            "name": "atoms-prod",
            "provider": "atoms",
            "settings": settings,
            "credentials": {"signing_secret": SECRET, "api_key": "atoms-api-key"},
        },
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()
    return source


def test_a_source_needs_the_platforms_webhook_secret(client: TestClient) -> None:
    response = client.post(
        "/api/sources",
        json={"name": "atoms", "provider": "atoms"},
        headers={"authorization": f"Bearer {create_org(client)}"},
    )

    assert (response.status_code, response.json()["field"]) == (422, "credentials.webhook_secret")


@pytest.mark.parametrize(
    ("sign_with", "tamper", "status"),
    [(SECRET, False, 202), (SECRET, True, 401), ("another-secret", False, 401), (None, False, 401)],
)
def test_signature_accepted_tampered_and_wrong_secret(
    client: TestClient, sign_with: str | None, tamper: bool, status: int
) -> None:
    source = atoms_source(client, create_org(client))
    body = json.dumps(payload("pre_conversation")).encode()
    headers = signed_by(sign_with, body) if sign_with else {"content-type": "application/json"}
    sent = body.replace(b"+14155550199", b"+14155550666") if tamper else body

    response = client.post(path_of(source["webhook_url"]), content=sent, headers=headers)

    assert response.status_code == status


class AtomsApi(BackgroundServer):
    """`GET /conversation/{callId}` on loopback: no recording for the first `bare` requests."""

    def __init__(self, conversation: dict[str, Any], *, bare: int = 0) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self._conversation, self._bare = conversation, bare
        super().__init__(Starlette(routes=[Route("/conversation/{call_id}", self._get)]))

    async def _get(self, request: Request) -> JSONResponse:
        self.requests.append((request.path_params["call_id"], request.headers.get("authorization")))
        data = dict(self._conversation["data"])
        if len(self.requests) <= self._bare:
            data |= {"recordingUrl": "", "recordingDualUrl": ""}
        return JSONResponse({"status": True, "data": data})


def test_end_to_end_through_the_worker_waiting_for_the_recording(
    client: TestClient, worker: None
) -> None:
    key = create_org(client)
    with AtomsApi(payload("conversation"), bare=1) as api:
        source = atoms_source(client, key, api_base_url=api.url)
        for name in WEBHOOKS:
            body = json.dumps(payload(name)).encode()
            response = client.post(
                path_of(source["webhook_url"]), content=body, headers=signed_by(SECRET, body)
            )
            assert response.status_code == 202, response.text
        record = wait_for_record(client, key, "CALL-1778226718000-a1b2c3")

    expected = payload("expected_record")
    volatile = ("id", "org_id", "created_at", "timeline", "assembly", "updated_at", "recording")
    assert {k: v for k, v in record.items() if k not in volatile} == {
        k: v for k, v in expected.items() if k not in volatile
    }
    assert (record["recording"]["url"], record["assembly"]["state"]) == (
        expected["recording"]["url"],
        "assembled",
    )
    # The recorded webhooks are from May; pre-conversation carries no time and gets today's.
    assert sorted(entry["event"] for entry in record["timeline"]) == [
        "analytics-completed",
        "post-conversation",
        "pre-conversation",
    ]
    assert api.requests[:2] == [("CALL-1778226718000-a1b2c3", "Bearer atoms-api-key")] * 2


def wait_for_record(client: TestClient, key: str, call_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = client.get(f"/api/calls/{call_id}", headers={"authorization": f"Bearer {key}"})
        if response.status_code == 200:
            record: dict[str, Any] = response.json()
            if record["assembly"]["state"] == "assembled" and record["analysis"]:
                return record
        time.sleep(0.1)
    raise AssertionError(f"{call_id} was not assembled")
