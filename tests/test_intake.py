"""The intake process's work, on the real database: verify, parse, group commit, enqueue."""

import json
import selectors
import socket
import threading
import time
from datetime import UTC, datetime

import psycopg
from sqlalchemy import select
from starlette.testclient import TestClient

from callwatch import signatures
from callwatch.crypto import Vault
from callwatch.db import make_engine, make_sessionmaker
from callwatch.frames import FrameBuffer, frame
from callwatch.inbox import InboxRow
from callwatch.inbox_writer import InboxWriter
from callwatch.intake import INCOMING, LINGER_S, OUTCOME, Incoming, Intake, Outcome, Sources, serve
from callwatch.providers.base import RequestHeaders
from callwatch.runtime import Runtime
from callwatch.tables import InboxEvent
from tests.conftest import create_org, create_source
from tests.factories import eventually

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
    return number, INCOMING.dump_json(incoming) + b"\n" + body


def handle(intake: Intake, requests: list[tuple[int, bytes]]) -> bytes:
    """The reply frames of one batch stored in one transaction, as intake does on SQLite."""
    replies, accepted = intake.parse(requests)
    return replies + intake.settle(accepted, intake.store(accepted))


def outcomes(replies: bytes) -> dict[int, Outcome]:
    return {number: OUTCOME.validate_json(body) for number, body in FrameBuffer().feed(replies)}


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
    replies = handle(
        intake,
        [
            first,
            (2, first[1]),  # the same delivery again, in the same batch
            request(3, token, webhook("p-2"), secret, "m2"),
            request(4, token, webhook("p-3"), "whsec_" + "A" * 44, "m3"),
            request(5, "no-such-token", webhook("p-4"), secret, "m4"),
            request(6, token, b'{"type": "call.status_changed"}', secret, "m5"),
        ],
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

    handle(intake, [request(1, token, webhook("p-1"), secret, "m1")])
    waiting = intake.until_send()
    handle(intake, [request(2, token, webhook("p-2"), secret, "m2")])
    handle(intake, [request(3, token, webhook("p-1"), secret, "m1")])  # a duplicate only

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
        handle(
            intake,
            [request(1, "token", webhook("p-1"), "whsec_x"), request(2, "token", b"{}", "whsec_x")],
        )
    )

    assert [(number, outcome.error) for number, outcome in replies.items()] == [
        (1, "StoreUnavailable"),
        (2, "StoreUnavailable"),
    ]
    assert replies[1].detail.startswith("database unavailable: ")
    assert (queued, intake.until_send()) == ([], None)


def stored(writer: InboxWriter, rows: list[InboxRow]) -> set[str]:
    """Send one batch and wait for its commit, as intake's loop does."""
    writer.send(rows)
    with selectors.DefaultSelector() as selector:
        selector.register(writer.fileno(), selectors.EVENT_READ)
        while True:
            selector.select(5)
            inserted = writer.poll()
            if inserted is not None:
                return inserted


def read_replies(connection: socket.socket, frames: FrameBuffer, count: int) -> dict[int, Outcome]:
    replies: dict[int, Outcome] = {}
    while len(replies) < count:
        for number, payload in frames.feed(connection.recv(65536)):
            replies[number] = OUTCOME.validate_json(payload)
    return replies


def test_requests_arriving_while_a_batch_is_stored_are_checked_meanwhile(
    client: TestClient, runtime: Runtime, postgres: str
) -> None:
    token, secret = source_of(client)
    ours, theirs = socket.socketpair()
    ours.settimeout(10)
    frames = FrameBuffer()
    writer = InboxWriter(postgres, "callwatch-test-intake")
    stored(writer, [])  # connected (and its INSERT prepared) before the table is locked
    intake = Intake(runtime.sessions, Sources(runtime.sessions, runtime.vault, 0), lambda _: None)
    server = threading.Thread(target=serve, args=(theirs, intake, writer))
    server.start()
    with (
        psycopg.connect(postgres) as blocker,
        psycopg.connect(postgres, autocommit=True) as observer,
    ):
        blocker.execute("LOCK TABLE inbox IN EXCLUSIVE MODE")  # held until the rollback

        def insert_waits() -> bool:
            waiting = observer.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'callwatch-test-intake' AND wait_event_type = 'Lock'"
            ).fetchone()
            return waiting == (1,)

        ours.sendall(frame(*request(1, token, webhook("p-1"), secret, "m1")))
        eventually(insert_waits)
        ours.sendall(frame(*request(2, token, webhook("p-2"), "whsec_" + "A" * 44, "m2")))
        ours.sendall(frame(*request(3, token, webhook("p-3"), secret, "m3")))
        meanwhile = read_replies(ours, frames, 1)
        blocker.rollback()
    after = read_replies(ours, frames, 2)
    ours.close()
    server.join(10)
    theirs.close()
    writer.close()

    assert {number: reply.error for number, reply in meanwhile.items()} == {2: "Unauthorized"}
    assert {number: reply.status for number, reply in after.items()} == {
        1: "accepted",
        3: "accepted",
    }


def test_request_headers_are_case_insensitive_and_the_first_of_a_repeat_wins() -> None:
    headers = RequestHeaders([("webhook-id", "a"), ("X-Custom", "b"), ("webhook-id", "c")])

    assert (headers["Webhook-ID"], headers.get("x-custom"), headers.get("gone"), dict(headers)) == (
        "a",
        "b",
        None,
        {"webhook-id": "a", "x-custom": "b"},
    )
