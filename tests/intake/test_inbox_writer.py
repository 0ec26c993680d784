"""Intake's Postgres inbox writer, on the real database: store, dedupe, lose the connection."""

import dataclasses
import select
from collections.abc import Iterator

import psycopg
import pytest
from starlette.testclient import TestClient

from callwatch.errors import StoreUnavailable
from callwatch.intake.inbox import InboxRow
from callwatch.intake.inbox_writer import InboxWriter
from callwatch.intake.receiver import rows_of
from callwatch.orgs import tenancy
from callwatch.runtime import Runtime
from tests.intake.test_receiver import request, source_of, webhook

NAME = "callwatch-test-writer"


def parsed(client: TestClient, runtime: Runtime, *call_ids: str) -> list[InboxRow]:
    token, secret = source_of(client)
    with runtime.sessions() as session:
        source = tenancy.source_by_token(session, runtime.vault, token)
    assert source is not None
    return [
        row
        for number, call_id in enumerate(call_ids)
        for row in rows_of(source, request(webhook(call_id), secret, f"m{number}"))
    ]


def stored(writer: InboxWriter, rows: list[InboxRow]) -> set[str]:
    """Store one batch and wait for its commit, as intake does on its event loop."""
    writer.connect()
    try:
        writer.send(rows)
        return polled(writer)
    except Exception:
        writer.close()
        raise


def polled(writer: InboxWriter) -> set[str]:
    while True:
        select.select([writer.fileno()], [], [], 5)
        inserted = writer.poll()
        if inserted is not None:
            return inserted


@pytest.fixture
def writer(postgres: str) -> Iterator[InboxWriter]:
    """A writer already connected, closed after the test."""
    writer = InboxWriter(postgres, NAME)
    writer.connect()
    yield writer
    writer.close()


def test_a_batch_is_stored_once_and_its_repeat_inserts_nothing(
    client: TestClient, runtime: Runtime, writer: InboxWriter
) -> None:
    rows = parsed(client, runtime, "p-1", "p-2")

    first = stored(writer, rows)
    again = stored(writer, rows)

    assert (first, again) == ({row.id for row in rows}, set())


def test_a_lost_connection_fails_one_batch_and_the_next_reconnects(
    client: TestClient, runtime: Runtime, postgres: str, writer: InboxWriter
) -> None:
    rows = parsed(client, runtime, "p-1")
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            [NAME],
        )

    with pytest.raises(StoreUnavailable, match=r"^database unavailable: "):
        stored(writer, rows)
    retried = stored(writer, rows)

    assert retried == {row.id for row in rows}


def test_a_batch_whose_insert_answered_is_not_committed_until_the_writer_polls_it(
    client: TestClient, runtime: Runtime, postgres: str, writer: InboxWriter
) -> None:
    rows = parsed(client, runtime, "p-1")
    writer.send(rows)
    answered, _, _ = select.select([writer.fileno()], [], [], 5)  # the INSERT's ids
    with psycopg.connect(postgres) as observer:
        visible = observer.execute("SELECT count(*) FROM inbox").fetchone()
    writer.close()  # as if the web process were killed here: the server rolls the INSERT back
    retried = stored(writer, rows)

    assert (len(answered), visible, retried) == (1, (0,), {row.id for row in rows})


def test_an_unreachable_database_is_store_unavailable() -> None:
    writer = InboxWriter("postgresql://postgres@127.0.0.1:1/test", NAME)

    with pytest.raises(StoreUnavailable, match=r"^database unavailable: "):
        writer.connect()
    assert not writer.connected


# What the inbox's columns cannot hold, set on a parsed row (intake's checks do not run here).
UNSTORABLE = {
    "too-long": {"dedupe_key": "k" * 201},
    "nul": {"provider_call_id": "p-\x00"},
    "surrogate": {"provider_call_id": "p-\ud800"},
}


@pytest.mark.parametrize("unstorable", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_a_batch_rejected_for_its_data_keeps_the_connection_for_the_next(
    client: TestClient, runtime: Runtime, writer: InboxWriter, unstorable: dict[str, str]
) -> None:
    good, parsed_bad = parsed(client, runtime, "p-1", "p-2")
    bad = dataclasses.replace(parsed_bad, **unstorable)
    backend = writer_backend(writer)

    with pytest.raises(psycopg.DataError):
        polled_batch(writer, [good, bad])
    retried = polled_batch(writer, [good])

    assert (retried, writer_backend(writer)) == ({good.id}, backend)


def polled_batch(writer: InboxWriter, rows: list[InboxRow]) -> set[str]:
    writer.send(rows)
    return polled(writer)


def writer_backend(writer: InboxWriter) -> int:
    assert writer._connection is not None
    return writer._connection.pgconn.backend_pid
