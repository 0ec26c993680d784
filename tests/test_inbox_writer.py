"""Intake's Postgres inbox writer, on the real database: store, dedupe, lose the connection."""

import select
from collections.abc import Iterator

import psycopg
import pytest
from starlette.testclient import TestClient

from callwatch.errors import StoreUnavailable
from callwatch.inbox import InboxRow
from callwatch.inbox_writer import InboxWriter
from callwatch.intake import Intake, Sources, rows_of
from callwatch.runtime import Runtime
from tests.test_intake import request, source_of, stored, webhook

NAME = "callwatch-test-writer"


def parsed(runtime: Runtime, *requests: tuple[int, bytes]) -> list[InboxRow]:
    intake = Intake(runtime.sessions, Sources(runtime.sessions, runtime.vault, 0), lambda _: None)
    replies, accepted = intake.parse(list(requests))
    assert replies == b""
    return rows_of(accepted)


def one_row(client: TestClient, runtime: Runtime) -> list[InboxRow]:
    token, secret = source_of(client)
    return parsed(runtime, request(1, token, webhook("p-1"), secret, "m1"))


@pytest.fixture
def writer(postgres: str) -> Iterator[InboxWriter]:
    """A writer already connected, closed after the test."""
    writer = InboxWriter(postgres, NAME)
    stored(writer, [])
    yield writer
    writer.close()


def test_a_batch_is_stored_once_and_its_repeat_inserts_nothing(
    client: TestClient, runtime: Runtime, writer: InboxWriter
) -> None:
    token, secret = source_of(client)
    rows = parsed(
        runtime,
        request(1, token, webhook("p-1"), secret, "m1"),
        request(2, token, webhook("p-2"), secret, "m2"),
    )

    first = stored(writer, rows)
    again = stored(writer, rows)

    assert (first, again) == ({row.id for row in rows}, set())


def test_a_lost_connection_fails_one_batch_and_the_next_reconnects(
    client: TestClient, runtime: Runtime, postgres: str, writer: InboxWriter
) -> None:
    rows = one_row(client, runtime)
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [NAME],
        )

    with pytest.raises(StoreUnavailable, match=r"^database unavailable: "):
        stored(writer, rows)
    retried = stored(writer, rows)

    assert retried == {row.id for row in rows}


def test_a_batch_whose_insert_answered_is_not_committed_until_the_writer_polls_it(
    client: TestClient, runtime: Runtime, postgres: str, writer: InboxWriter
) -> None:
    rows = one_row(client, runtime)
    writer.send(rows)
    answered, _, _ = select.select([writer.fileno()], [], [], 5)  # the INSERT's ids
    with psycopg.connect(postgres) as observer:
        visible = observer.execute("SELECT count(*) FROM inbox").fetchone()
    writer.close()  # as if intake were killed here: the server rolls the INSERT back
    retried = stored(writer, rows)

    assert (len(answered), visible, retried) == (1, (0,), {row.id for row in rows})


def test_an_unreachable_database_is_store_unavailable() -> None:
    writer = InboxWriter("postgresql://postgres@127.0.0.1:1/test", NAME)

    with pytest.raises(StoreUnavailable, match=r"^database unavailable: "):
        writer.send([])
