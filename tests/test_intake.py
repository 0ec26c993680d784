"""The intake process's work, on the real database: verify, parse, group commit, enqueue."""

import json
import time
from datetime import UTC, datetime

from sqlalchemy import select
from starlette.testclient import TestClient

from callwatch import signatures
from callwatch.crypto import Vault
from callwatch.db import make_engine, make_sessionmaker
from callwatch.frames import FrameBuffer
from callwatch.intake import LINGER_S, Incoming, Intake, Outcome, Sources
from callwatch.runtime import Runtime
from callwatch.tables import InboxEvent
from tests.conftest import create_org, create_source

NOW = datetime.now(UTC)


def webhook(call_id: str, status: str = "ringing") -> bytes:
    data = {"call_id": call_id, "status": status}
    return json.dumps(
        {"type": "call.status_changed", "timestamp": NOW.isoformat(), "data": data}
    ).encode()


def request(
    number: int, token: str, body: bytes, secret: str, msg_id: str = "msg-1"
) -> tuple[int, bytes]:
    """A request frame as the web process sends it."""
    headers = {"content-type": "application/json"}
    headers |= signatures.headers(secret, msg_id, int(time.time()), body)
    incoming = Incoming(
        token=token,
        headers=list(headers.items()),
        client_ip="127.0.0.1",
        url=f"http://testserver/webhooks/{token}",
        received_at=datetime.now(UTC),
    )
    return number, incoming.model_dump_json().encode() + b"\n" + body


def outcomes(replies: bytes) -> dict[int, Outcome]:
    return {
        number: Outcome.model_validate_json(body) for number, body in FrameBuffer().feed(replies)
    }


def source_of(client: TestClient) -> tuple[str, str]:
    source = create_source(client, create_org(client))
    return source["webhook_url"].rsplit("/", 1)[1], source["signing_secret"]


def test_a_batch_answers_each_request_and_stores_the_new_events_once(
    client: TestClient, runtime: Runtime
) -> None:
    token, secret = source_of(client)
    queued: list[list[str]] = []
    intake = Intake(runtime.sessions, Sources(runtime.sessions, runtime.vault, 0), queued.append)
    first = request(1, token, webhook("p-1"), secret, "m1")
    replies = intake.handle(
        [
            first,
            (2, first[1]),  # the same delivery again, in the same batch
            request(3, token, webhook("p-2"), secret, "m2"),
            request(4, token, webhook("p-3"), "whsec_" + "A" * 44, "m3"),
            request(5, "no-such-token", webhook("p-4"), secret, "m4"),
            request(6, token, b'{"type": "call.status_changed"}', secret, "m5"),
        ]
    )
    intake.send()

    with runtime.sessions() as session:
        stored = session.execute(
            select(InboxEvent.id, InboxEvent.provider_call_id).order_by(InboxEvent.id)
        ).all()
    ids = [event_id for event_id, _ in stored]
    assert [call_id for _, call_id in stored] == ["p-1", "p-2"]
    assert outcomes(replies) == {
        1: Outcome(provider="generic", status="accepted", events=ids[:1]),
        2: Outcome(provider="generic", status="duplicate"),
        3: Outcome(provider="generic", status="accepted", events=ids[1:]),
        4: Outcome(
            provider="generic", error="Unauthorized", detail="webhook-signature does not match"
        ),
        5: Outcome(error="NotFound", detail="unknown webhook token"),
        6: Outcome(
            provider="generic",
            error="InvalidInput",
            detail="timestamp: Field required",
            field="timestamp",
        ),
    }
    assert queued == [ids]


def test_stored_ids_wait_briefly_to_share_one_queue_message(
    client: TestClient, runtime: Runtime
) -> None:
    token, secret = source_of(client)
    queued: list[list[str]] = []
    intake = Intake(runtime.sessions, Sources(runtime.sessions, runtime.vault, 0), queued.append)
    assert intake.until_send() is None

    intake.handle([request(1, token, webhook("p-1"), secret, "m1")])
    waiting = intake.until_send()
    intake.handle([request(2, token, webhook("p-2"), secret, "m2")])
    intake.handle([request(3, token, webhook("p-1"), secret, "m1")])  # a duplicate only

    assert waiting is not None
    assert 0 < waiting <= LINGER_S
    assert queued == []
    intake.send()
    assert [len(message) for message in queued] == [2]
    assert intake.until_send() is None


def test_an_unreachable_database_fails_every_request_of_the_batch() -> None:
    dead = make_sessionmaker(make_engine("postgresql://postgres@127.0.0.1:1/test"))
    queued: list[list[str]] = []
    intake = Intake(dead, Sources(dead, Vault("test-secret-key"), 0), queued.append)

    replies = outcomes(
        intake.handle(
            [request(1, "token", webhook("p-1"), "whsec_x"), request(2, "token", b"{}", "whsec_x")]
        )
    )

    assert [(number, outcome.error) for number, outcome in replies.items()] == [
        (1, "StoreUnavailable"),
        (2, "StoreUnavailable"),
    ]
    assert replies[1].detail.startswith("database unavailable: ")
    assert (queued, intake.until_send()) == ([], None)
