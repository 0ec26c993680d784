"""The worker redacts an org's calls before storing them when the org asks (`redact_pii`), on real
parts: webhook → Redis → Celery worker → database, read back through the API and the tables."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from callwatch.model.events import CallStatus
from callwatch.model.records import (
    Analysis,
    CallDetails,
    CallError,
    Evaluation,
    Recording,
    Utterance,
)
from callwatch.runtime import Runtime
from callwatch.simulator import SimCall, events_for
from callwatch.tables import Call, Delivery, InboxEvent
from callwatch.tables import Org as Org_
from tests import factories
from tests.conftest import create_org, create_source, path_of, signed

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
CUSTOMER = "+442079460958"  # London: numbers written without +44 are read as British
AGENT = "+14155552671"


def talkative_call(call_id: str) -> SimCall:
    """A call whose free text holds a phone number, an email, a card, an IBAN and an SSN."""
    detail = CallDetails(
        direction="inbound",
        from_number=CUSTOMER,
        to_number=AGENT,
        recording=Recording(status="available", url="https://rec.example/1.wav"),
        transcript=[
            Utterance(role="assistant", content="Hello, how can I help?", start_s=0.5),
            Utterance(role="user", content="Call me back on 07911 123456, order 10293847."),
            Utterance(role="user", content="Card 4111 1111 1111 1111, mail jo@example.co.uk"),
        ],
        analysis=Analysis(
            summary="Caller (07911 123456) paid £84.20 on 14/11/2026.",
            sentiment="positive",
            data={"refund_to": {"iban": "GB82 WEST 1234 5698 7654 32", "amount": 84.2}},
        ),
        evaluations=[Evaluation(name="kyc", success=True, reason="SSN 512-34-8890 given")],
        errors=[CallError(type="tool", description="lookup of jo@example.co.uk timed out")],
        metadata={"crm": {"notes": ["alt +1 212 555 0187"], "tier": 2}},
    )
    return SimCall(
        call_id=call_id,
        agent_id="support",
        agent_name="Support",
        campaign_id=None,
        direction="inbound",
        from_number=CUSTOMER,
        to_number=AGENT,
        status=CallStatus.completed,
        started_at=T0,
        ringing_at=T0 + timedelta(seconds=1),
        answered_at=T0 + timedelta(seconds=3),
        ended_at=T0 + timedelta(seconds=60),
        ring_s=2.0,
        detail=detail,
    )


REDACTED = {
    "transcript": [
        "Hello, how can I help?",
        "Call me back on [PHONE], order 10293847.",
        "Card [CARD], mail [EMAIL]",
    ],
    "analysis": {
        "summary": "Caller ([PHONE]) paid £84.20 on 14/11/2026.",
        "success": None,
        "sentiment": "positive",
        "data": {"refund_to": {"iban": "[IBAN]", "amount": 84.2}},
    },
    "evaluation": "SSN [SSN] given",
    "error": "lookup of [EMAIL] timed out",
    "metadata": {"crm": {"notes": ["alt [PHONE]"], "tier": 2}},
    "numbers": [CUSTOMER, AGENT, CUSTOMER],
}


def free_text(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "transcript": [turn["content"] for turn in record["transcript"]],
        "analysis": record["analysis"],
        "evaluation": record["evaluations"][0]["reason"],
        "error": record["errors"][0]["description"],
        "metadata": record["metadata"],
        "numbers": [record["from_number"], record["to_number"], record["customer_number"]],
    }


Org = tuple[str, str, dict[str, Any]]  # id, API key, generic source


def org(client: TestClient, runtime: Runtime, name: str) -> Org:
    key = create_org(client, name)
    source = create_source(client, key)
    with runtime.sessions() as session:
        org_id = session.scalar(select(Org_.id).where(Org_.name == name))
    assert org_id is not None
    return org_id, key, source


def redacting(client: TestClient, key: str) -> None:
    """The org of this API key turns `redact_pii` on, as its users would."""
    headers = {"authorization": f"Bearer {key}"}
    reply = client.patch("/api/settings", json={"redact_pii": True}, headers=headers)
    assert reply.json()["redact_pii"] is True


def send(client: TestClient, source: dict[str, Any], bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        raw = json.dumps(body).encode()
        headers = signed(source["webhook_secret"], raw)
        response = client.post(path_of(source["webhook_url"]), content=raw, headers=headers)
        assert response.status_code == 202, response.text


def late_note(call: SimCall, note: str) -> dict[str, Any]:
    """A status event that arrives after assembly, with a note in its metadata."""
    body = events_for(call, embed_detail=False)[0]
    body["data"]["metadata"] = {"late": note}
    return body


def stored(runtime: Runtime, call_id: str) -> tuple[dict[str, Any], list[Any]]:
    """The call's stored details and the JSON of its events' raw bodies, as the tables hold them."""
    with runtime.sessions() as session:
        call = session.scalars(select(Call).where(Call.provider_call_id == call_id)).one()
        bodies = session.scalars(
            select(InboxEvent.raw_body).where(InboxEvent.call_id == call.id).order_by(InboxEvent.id)
        )
        return call.details or {}, [json.loads(body) for body in bodies]


def test_an_org_that_redacts_stores_its_calls_free_text_redacted_and_numbers_kept(
    client: TestClient, runtime: Runtime, worker: None
) -> None:
    _, key, source = org(client, runtime, "careful")
    redacting(client, key)
    subscription = {"url": "http://127.0.0.1:9/hook", "event_types": ["call.assembled"]}
    headers = {"authorization": f"Bearer {key}"}
    assert client.post("/api/subscriptions", json=subscription, headers=headers).status_code == 201
    call = talkative_call("call-redacted")
    send(client, source, events_for(call, embed_detail=True))

    record = factories.wait_for_call(client, key, call.call_id, factories.in_state("assembled"))

    assert free_text(record) == REDACTED
    details, bodies = stored(runtime, call.call_id)
    assert [turn["content"] for turn in details["transcript"]] == REDACTED["transcript"]
    assert details["metadata"] == REDACTED["metadata"]
    completion = bodies[-1]["data"]
    assert [turn["content"] for turn in completion["transcript"]] == REDACTED["transcript"]
    assert (completion["from_number"], completion["call_id"]) == ("[PHONE]", call.call_id)
    with runtime.sessions() as session:  # what subscribers are sent
        delivered = session.scalars(select(Delivery.payload)).one()
    assert free_text(delivered["data"]["record"]) == REDACTED

    # An event after assembly rebuilds the record: redacted too, and so is its body.
    send(client, source, [late_note(call, "now on 020 7946 0000")])
    rebuilt = factories.wait_for_call(
        client, key, call.call_id, lambda record: "late" in record["metadata"]
    )

    assert rebuilt["metadata"] == {**REDACTED["metadata"], "late": "now on [PHONE]"}
    assert free_text(rebuilt) | {"metadata": None} == REDACTED | {"metadata": None}
    _, bodies = stored(runtime, call.call_id)
    assert bodies[-1]["data"]["metadata"] == {"late": "now on [PHONE]"}


def test_an_org_that_does_not_redact_stores_its_calls_as_sent(
    client: TestClient, runtime: Runtime, worker: None
) -> None:
    _, key, source = org(client, runtime, "trusting")
    _, other_key, _ = org(client, runtime, "careful")
    redacting(client, other_key)
    call = talkative_call("call-kept")
    sent = events_for(call, embed_detail=True)
    send(client, source, sent)

    record = factories.wait_for_call(client, key, call.call_id, factories.in_state("assembled"))

    assert free_text(record) == {
        "transcript": [turn.content for turn in call.detail.transcript or []],
        "analysis": (call.detail.analysis or Analysis()).model_dump(mode="json"),
        "evaluation": "SSN 512-34-8890 given",
        "error": "lookup of jo@example.co.uk timed out",
        "metadata": call.detail.metadata,
        "numbers": [CUSTOMER, AGENT, CUSTOMER],
    }
    details, bodies = stored(runtime, call.call_id)
    assert details["transcript"] == [
        turn.model_dump(mode="json", exclude_none=True) for turn in call.detail.transcript or []
    ]
    assert bodies == sent
