"""The writer process's parts: framing, and group commits into the real database."""

from datetime import timedelta

from sqlalchemy import select
from starlette.testclient import TestClient

from callwatch.db import make_engine, make_sessionmaker
from callwatch.events import CallEvent
from callwatch.inbox import ROW_JSON, InboxRow
from callwatch.inbox_writer import LINGER_S, Batcher, FrameBuffer, frame
from callwatch.runtime import Runtime
from callwatch.tables import InboxEvent
from tests.factories import T0, Tenant, tenant


def test_frames_come_out_whole_however_the_stream_is_cut() -> None:
    frames = [(1, b"evt_1\n{}"), (2, b""), (4_000_000_000, b"x" * 300)]
    stream = b"".join(frame(number, payload) for number, payload in frames)

    for cut in range(len(stream) + 1):
        buffer = FrameBuffer()
        assert buffer.feed(stream[:cut]) + buffer.feed(stream[cut:]) == frames


def test_bytes_arriving_one_at_a_time_make_the_same_frames() -> None:
    frames = [(7, b"abc"), (8, b"de\nf")]
    buffer = FrameBuffer()
    stream = b"".join(frame(number, payload) for number, payload in frames)

    assert [got for byte in stream for got in buffer.feed(bytes([byte]))] == frames


def inbox_row(owner: Tenant, event_id: str, dedupe_key: str) -> InboxRow:
    event = CallEvent(
        provider_call_id="p-1",
        type="call.status_changed",
        status="ringing",
        at=T0,
        dedupe_key=dedupe_key,
    )
    return InboxRow(
        id=event_id,
        org_id=owner.org_id,
        source_id=owner.source_id,
        dedupe_key=dedupe_key,
        provider_call_id="p-1",
        event=event,
        raw_body='{"a": "line\\nbreak"}',
        content_type="application/json",
        received_at=T0,
        due_at=T0 + timedelta(seconds=1),
    )


def request(number: int, rows: list[InboxRow]) -> tuple[int, bytes]:
    """A request frame as InboxClient sends it."""
    ids = b" ".join(row.id.encode() for row in rows)
    return number, ids + b"\n" + b"\n".join(ROW_JSON.dump_json(row) for row in rows)


def test_one_transaction_stores_new_rows_and_flags_duplicates(
    client: TestClient, runtime: Runtime
) -> None:
    owner = tenant(client, "acme")
    queued: list[list[str]] = []
    batcher = Batcher(runtime.sessions, queued.append)
    first = inbox_row(owner, "evt_1", "k1")
    again = inbox_row(owner, "evt_2", "k1")  # the same delivery, received twice
    other = inbox_row(owner, "evt_3", "k2")

    replies = batcher.write([request(5, [first]), request(6, [again, other])])
    batcher.send()

    assert replies == frame(5, b"1") + frame(6, b"01")
    assert queued == [["evt_1", "evt_3"]]
    with runtime.sessions() as session:
        stored = session.scalars(select(InboxEvent).order_by(InboxEvent.id)).all()
        assert [
            (row.id, row.dedupe_key, row.event, row.raw_body, row.received_at, row.attempts)
            for row in stored
        ] == [
            ("evt_1", "k1", first.event.model_dump(mode="json"), first.raw_body, T0, 0),
            ("evt_3", "k2", other.event.model_dump(mode="json"), other.raw_body, T0, 0),
        ]


def test_stored_ids_wait_briefly_to_share_one_queue_message(
    client: TestClient, runtime: Runtime
) -> None:
    owner = tenant(client, "acme")
    queued: list[list[str]] = []
    batcher = Batcher(runtime.sessions, queued.append)
    assert batcher.until_send() is None

    batcher.write([request(1, [inbox_row(owner, "evt_1", "k1")])])
    waiting = batcher.until_send()
    batcher.write([request(2, [inbox_row(owner, "evt_2", "k2")])])
    batcher.write([request(3, [inbox_row(owner, "evt_3", "k1")])])  # a duplicate only

    assert waiting is not None
    assert 0 < waiting <= LINGER_S
    assert queued == []
    batcher.send()
    assert (queued, batcher.until_send()) == ([["evt_1", "evt_2"]], None)


def test_an_unreachable_database_fails_every_request_of_the_batch(client: TestClient) -> None:
    owner = tenant(client, "acme")
    dead = make_engine("postgresql://postgres@127.0.0.1:1/test", pool_pre_ping=False)
    queued: list[list[str]] = []
    batcher = Batcher(make_sessionmaker(dead), queued.append)

    replies = FrameBuffer().feed(
        batcher.write(
            [
                request(1, [inbox_row(owner, "evt_1", "k1")]),
                request(2, [inbox_row(owner, "evt_2", "k2")]),
            ]
        )
    )

    assert [(number, payload[:2]) for number, payload in replies] == [(1, b"!u"), (2, b"!u")]
    assert b"database unavailable" in replies[0][1]
    assert (queued, batcher.until_send()) == ([], None)
