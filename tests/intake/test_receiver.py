"""Intake on the real database: verify, parse, group commit, enqueue, on an event loop."""

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from starlette.testclient import TestClient

from callwatch import signatures
from callwatch.crypto import Vault
from callwatch.db import make_engine, make_sessionmaker
from callwatch.errors import CallwatchError, NotFound, StoreUnavailable
from callwatch.intake import receiver as intake_module
from callwatch.intake.inbox import InboxRow
from callwatch.intake.inbox_writer import InboxWriter
from callwatch.intake.receiver import APPLICATION_NAME, LINGER_S, Intake
from callwatch.intake.source_cache import Sources
from callwatch.providers.base import RequestHeaders, SourceConfig, WebhookRequest
from callwatch.runtime import Runtime
from callwatch.tables import InboxEvent
from tests.conftest import create_org, create_source

T = TypeVar("T")
WRONG_SECRET = "whsec_" + "A" * 44


def webhook(call_id: str, status: str = "ringing") -> bytes:
    data = {"call_id": call_id, "status": status}
    now = datetime.now(UTC).isoformat()
    return json.dumps({"type": "call.status_changed", "timestamp": now, "data": data}).encode()


def request(body: bytes, secret: str, msg_id: str) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    headers |= signatures.headers(secret, msg_id, int(time.time()), body)
    return WebhookRequest(
        body=body,
        headers=RequestHeaders(headers.items()),
        content_type="application/json",
        client_ip="127.0.0.1",
        url="http://testserver/webhooks/token",
        received_at=datetime.now(UTC),
    )


def source_of(client: TestClient) -> tuple[str, str]:
    source = create_source(client, create_org(client))
    return source["webhook_url"].rsplit("/", 1)[1], source["webhook_secret"]


def intake_on(
    runtime: Runtime,
    queued: list[list[str]],
    *,
    connect: bool = False,
    deadline_s: float = 30.0,
) -> Intake:
    """Intake as the web process builds it: a writer on Postgres, a worker thread on SQLite.

    `connect`: the writer connects (and prepares its INSERT) now, before a test locks the table.
    `deadline_s`: long by default, for tests that hold a batch on purpose.
    """
    writer = None
    if runtime.engine.dialect.name == "postgresql":
        writer = InboxWriter(runtime.settings.database_url, APPLICATION_NAME)
        if connect:
            writer.connect()
    sources = Sources(runtime.sessions, runtime.vault, 0)
    return Intake(runtime.sessions, sources, queued.append, writer, deadline_s=deadline_s)


def run(intake: Intake, scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a scenario on an event loop, then close intake as the web process does."""

    async def main() -> T:
        try:
            return await scenario()
        finally:
            intake.close()

    return asyncio.run(main())


def outcome(result: list[str] | BaseException) -> Any:
    if isinstance(result, CallwatchError):
        return (type(result).__name__, str(result), getattr(result, "field", None))
    return result


def inbox(runtime: Runtime) -> list[tuple[str, str]]:
    with runtime.sessions() as session:
        rows = session.execute(select(InboxEvent.id, InboxEvent.provider_call_id))
        return sorted((call_id, event_id) for event_id, call_id in rows)


def test_a_batch_answers_each_request_and_stores_the_new_events_once(
    client: TestClient, runtime: Runtime
) -> None:
    token, secret = source_of(client)
    queued: list[list[str]] = []
    intake = intake_on(runtime, queued)
    first = request(webhook("p-1"), secret, "m1")

    async def scenario() -> tuple[list[Any], Any]:
        source = await intake.sources.lookup(token)
        results = await asyncio.gather(
            intake.submit(source, first),
            intake.submit(source, first),  # the same delivery again, in the same batch
            intake.submit(source, request(webhook("p-2"), secret, "m2")),
            intake.submit(source, request(webhook("p-3"), WRONG_SECRET, "m3")),
            intake.submit(source, request(b'{"type": "call.status_changed"}', secret, "m4")),
            return_exceptions=True,
        )
        unknown = await asyncio.gather(intake.sources.lookup("no-such"), return_exceptions=True)
        return [outcome(result) for result in results], outcome(unknown[0])

    results, unknown = run(intake, scenario)

    stored = inbox(runtime)
    assert [call_id for call_id, _ in stored] == ["p-1", "p-2"]
    [(_, one), (_, two)] = stored
    assert results == [
        [one],
        [],
        [two],
        ("Unauthorized", "webhook-signature does not match", None),
        ("InvalidInput", "timestamp: Field required", "timestamp"),
    ]
    assert unknown == ("NotFound", "unknown webhook token", None)
    assert queued == [sorted([one, two])]


def test_stored_ids_wait_briefly_to_share_one_queue_message(
    client: TestClient, runtime: Runtime
) -> None:
    token, secret = source_of(client)
    queued: list[list[str]] = []
    intake = intake_on(runtime, queued)

    async def scenario() -> tuple[list[list[str]], list[list[str]]]:
        source = await intake.sources.lookup(token)
        [one] = await intake.submit(source, request(webhook("p-1"), secret, "m1"))
        [two] = await intake.submit(source, request(webhook("p-2"), secret, "m2"))
        await intake.submit(source, request(webhook("p-1"), secret, "m1"))  # a duplicate only
        meanwhile = list(queued)
        await asyncio.sleep(LINGER_S * 4)
        return meanwhile, [[one, two]]

    meanwhile, expected = run(intake, scenario)

    assert (meanwhile, queued) == ([], expected)


@pytest.mark.parametrize("with_writer", [True, False], ids=["postgres-writer", "worker-thread"])
def test_an_unreachable_database_fails_every_request_of_the_batch(with_writer: bool) -> None:
    dead_url = "postgresql://postgres@127.0.0.1:1/test"
    dead = make_sessionmaker(make_engine(dead_url))
    writer = InboxWriter(dead_url, APPLICATION_NAME) if with_writer else None
    queued: list[list[str]] = []
    sources = Sources(dead, Vault("test-secret-key"), 0)
    intake = Intake(dead, sources, queued.append, writer, deadline_s=5.0)
    secret = "whsec_" + "B" * 44
    source = SourceConfig("src_1", "org_1", "gen", "generic", {}, {"webhook_secret": secret})

    async def scenario() -> list[Any]:
        return await asyncio.gather(
            intake.submit(source, request(webhook("p-1"), secret, "m1")),
            intake.submit(source, request(webhook("p-2"), secret, "m2")),
            intake.sources.lookup("token"),
            return_exceptions=True,
        )

    results = run(intake, scenario)

    assert [type(result) for result in results] == [StoreUnavailable] * 3
    assert all(str(result).startswith("database unavailable: ") for result in results)
    assert queued == []


@contextmanager
def inbox_locked(postgres: str) -> Iterator[Callable[[], bool]]:
    """Hold a lock that makes inbox writes wait; yields "is the writer waiting on it yet?"."""
    with (
        psycopg.connect(postgres) as blocker,
        psycopg.connect(postgres, autocommit=True) as observer,
    ):
        blocker.execute("LOCK TABLE inbox IN EXCLUSIVE MODE")  # held until the rollback
        waiting = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        yield lambda: observer.execute(waiting, [APPLICATION_NAME]).fetchone() == (1,)
        blocker.rollback()


async def until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_requests_arriving_while_a_batch_is_stored_are_checked_and_go_in_the_next(
    client: TestClient, runtime: Runtime, postgres: str
) -> None:
    token, secret = source_of(client)
    intake = intake_on(runtime, [], connect=True)

    async def scenario() -> tuple[Any, bool, Any, Any]:
        source = await intake.sources.lookup(token)
        with inbox_locked(postgres) as writer_waits:
            first = asyncio.ensure_future(
                intake.submit(source, request(webhook("p-1"), secret, "m1"))
            )
            await until(writer_waits)
            rejected = await asyncio.gather(
                intake.submit(source, request(webhook("p-2"), WRONG_SECRET, "m2")),
                return_exceptions=True,
            )
            second = asyncio.ensure_future(
                intake.submit(source, request(webhook("p-3"), secret, "m3"))
            )
            await asyncio.sleep(0.2)
            waiting = not first.done() and not second.done()
        return outcome(rejected[0]), waiting, await first, await second

    rejected, waiting, first, second = run(intake, scenario)

    [(_, one), (_, three)] = inbox(runtime)
    assert (rejected, waiting, first, second) == (
        ("Unauthorized", "webhook-signature does not match", None),
        True,
        [one],
        [three],
    )


def test_a_request_cancelled_while_its_batch_is_stored_leaves_the_others_answered(
    client: TestClient, runtime: Runtime, postgres: str
) -> None:
    token, secret = source_of(client)
    intake = intake_on(runtime, [], connect=True)

    async def scenario() -> tuple[bool, list[str]]:
        source = await intake.sources.lookup(token)
        with inbox_locked(postgres) as writer_waits:
            gone = asyncio.ensure_future(
                intake.submit(source, request(webhook("p-1"), secret, "m1"))
            )
            kept = asyncio.ensure_future(
                intake.submit(source, request(webhook("p-2"), secret, "m2"))
            )
            await until(writer_waits)
            gone.cancel()
            await asyncio.sleep(0)
        return gone.cancelled(), await kept

    cancelled, kept = run(intake, scenario)

    assert [call_id for call_id, _ in inbox(runtime)] == ["p-1", "p-2"]
    assert (cancelled, kept) == (True, [inbox(runtime)[1][1]])


def test_a_connection_lost_mid_batch_fails_that_batch_and_the_next_reconnects(
    client: TestClient, runtime: Runtime, postgres: str
) -> None:
    token, secret = source_of(client)
    intake = intake_on(runtime, [], connect=True)
    delivery = request(webhook("p-1"), secret, "m1")

    async def scenario() -> tuple[Any, list[str], list[str]]:
        source = await intake.sources.lookup(token)
        with (
            inbox_locked(postgres) as writer_waits,
            psycopg.connect(postgres, autocommit=True) as admin,
        ):
            lost = asyncio.ensure_future(intake.submit(source, delivery))
            await until(writer_waits)
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = current_database()",
                [APPLICATION_NAME],
            )
            failed = await asyncio.gather(lost, return_exceptions=True)
        return (
            type(failed[0]).__name__,
            await intake.submit(source, delivery),
            await intake.submit(source, delivery),
        )

    failed, retried, again = run(intake, scenario)

    [(_, stored)] = inbox(runtime)  # the lost batch left nothing behind
    assert (failed, retried, again) == ("StoreUnavailable", [stored], [])


class CountedSources(Sources):
    """Sources that note each token they read from the database."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[str] = []

    def _read(self, token: str) -> SourceConfig | None:
        self.reads.append(token)
        return super()._read(token)


def test_a_source_is_read_once_for_lookups_that_arrive_together(
    client: TestClient, runtime: Runtime
) -> None:
    token, _ = source_of(client)
    sources = CountedSources(runtime.sessions, runtime.vault, 60)

    async def scenario() -> list[str]:
        found = await asyncio.gather(*(sources.lookup(token) for _ in range(5)))
        await sources.lookup(token)  # cached
        with pytest.raises(NotFound):
            await sources.lookup("no-such")
        with pytest.raises(NotFound):
            await sources.lookup("no-such")  # an unknown token is cached too
        return [source.provider for source in found]

    assert asyncio.run(scenario()) == ["generic"] * 5
    assert sources.reads == [token, "no-such"]


def test_the_source_cache_is_bounded(client: TestClient, runtime: Runtime) -> None:
    token, _ = source_of(client)
    sources = CountedSources(runtime.sessions, runtime.vault, 60, limit=2)

    async def scenario() -> None:
        for looked_up in (token, "scan-1", token, "scan-2", token):
            with contextlib.suppress(NotFound):
                await sources.lookup(looked_up)

    asyncio.run(scenario())

    # Full when "scan-2" came: emptied, so the token is read again.
    assert sources.reads == [token, "scan-1", "scan-2", token]


def test_request_headers_are_case_insensitive_and_the_first_of_a_repeat_wins() -> None:
    headers = RequestHeaders([("webhook-id", "a"), ("X-Custom", "b"), ("webhook-id", "c")])

    assert (headers["Webhook-ID"], headers.get("x-custom"), headers.get("gone"), dict(headers)) == (
        "a",
        "b",
        None,
        {"webhook-id": "a", "x-custom": "b"},
    )


@contextmanager
def inbox_held(runtime: Runtime) -> Iterator[None]:
    """Make every inbox write wait until the block ends: a lock on Postgres, SQLite's write lock."""
    url = runtime.settings.database_url
    if url.startswith("postgresql"):
        with psycopg.connect(url) as blocker:
            blocker.execute("LOCK TABLE inbox IN EXCLUSIVE MODE")
            yield
            blocker.rollback()
        return
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as blocker:
        blocker.isolation_level = None
        blocker.execute("BEGIN IMMEDIATE")
        yield
        blocker.execute("ROLLBACK")


def test_a_batch_not_stored_within_its_deadline_gets_503_and_the_next_batch_is_stored(
    client: TestClient, runtime: Runtime
) -> None:
    token, secret = source_of(client)
    intake = intake_on(runtime, [], connect=True, deadline_s=0.2)

    async def scenario() -> tuple[Any, Any, list[str]]:
        source = await intake.sources.lookup(token)
        with inbox_held(runtime):
            held = intake.submit(source, request(webhook("p-1"), secret, "m1"))
            # Without a deadline the batch would wait for the lock; the test gives it 10 s.
            [expired] = await asyncio.gather(asyncio.wait_for(held, 10), return_exceptions=True)
            readiness = await intake.can_store()
        stored = await intake.submit(source, request(webhook("p-2"), secret, "m2"))
        return type(expired).__name__, (readiness == "ok", await intake.can_store()), stored

    expired, readiness, stored = run(intake, scenario)

    assert (expired, readiness, stored) == (
        "StoreUnavailable",
        (False, "ok"),
        [event_id for call_id, event_id in inbox(runtime) if call_id == "p-2"],
    )


def test_closing_intake_answers_the_batch_under_way_and_the_requests_waiting_503(
    client: TestClient, runtime: Runtime
) -> None:
    token, secret = source_of(client)
    intake = intake_on(runtime, [], connect=True)

    async def scenario() -> list[Any]:
        source = await intake.sources.lookup(token)
        with inbox_held(runtime):
            storing = asyncio.ensure_future(
                intake.submit(source, request(webhook("p-1"), secret, "m1"))
            )
            await asyncio.sleep(0.1)  # its batch is under way
            waiting = asyncio.ensure_future(
                intake.submit(source, request(webhook("p-2"), secret, "m2"))
            )
            await asyncio.sleep(0)
            intake.close()  # as the web process stops
            results = await asyncio.gather(
                asyncio.wait_for(storing, 10), asyncio.wait_for(waiting, 10), return_exceptions=True
            )
        return [outcome(result) for result in results]

    results = run(intake, scenario)

    stopping = ("StoreUnavailable", "database unavailable: the server is stopping", None)
    assert results == [stopping, stopping]


# What the inbox's columns cannot hold, set on the parsed rows of the request whose webhook-id is
# "bad" (as if intake's own checks had missed it): on SQLite only what its driver cannot bind.
UNSTORABLE = {
    "too-long": (
        {"dedupe_key": "k" * 201},
        "dedupe_key is 201 characters long; at most 200 can be stored",
        "dedupe_key",
        True,
    ),
    "nul": (
        {"provider_call_id": "p-\x00"},
        "provider_call_id contains a NUL character, which the database cannot store",
        "provider_call_id",
        True,
    ),
    "surrogate": (
        {"provider_call_id": "p-\ud800"},
        "provider_call_id contains text that is not valid Unicode (a lone surrogate)",
        "provider_call_id",
        False,
    ),
}


@pytest.mark.parametrize("unstorable", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_a_request_the_inbox_cannot_hold_fails_alone_and_its_batch_is_stored(
    client: TestClient,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    unstorable: tuple[dict[str, str], str, str, bool],
) -> None:
    changes, detail, field, postgres_only = unstorable
    if postgres_only and runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores it")
    parse = intake_module.rows_of

    def rows_of(source: SourceConfig, delivery: WebhookRequest) -> list[InboxRow]:
        rows = parse(source, delivery)
        if delivery.headers.get("webhook-id") == "bad":
            return [dataclasses.replace(row, **changes) for row in rows]
        return rows

    monkeypatch.setattr(intake_module, "rows_of", rows_of)
    token, secret = source_of(client)
    queued: list[list[str]] = []
    intake = intake_on(runtime, queued)

    async def scenario() -> list[Any]:
        source = await intake.sources.lookup(token)
        results = await asyncio.gather(  # one batch
            intake.submit(source, request(webhook("p-1"), secret, "m1")),
            intake.submit(source, request(webhook("p-2"), secret, "bad")),
            intake.submit(source, request(webhook("p-3"), secret, "m3")),
            return_exceptions=True,
        )
        return [outcome(result) for result in results]

    results = run(intake, scenario)

    [(_, one), (_, three)] = inbox(runtime)
    assert results == [[one], ("InvalidInput", detail, field), [three]]
    assert sorted(event_id for message in queued for event_id in message) == sorted([one, three])


def test_requests_of_the_largest_body_are_each_stored_and_answered(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAX_BATCH requests of the largest body (1 MiB by default), arriving together."""
    parse = intake_module.rows_of
    body = "x" * runtime.settings.max_body_bytes

    def rows_of(source: SourceConfig, delivery: WebhookRequest) -> list[InboxRow]:
        return [dataclasses.replace(row, raw_body=body) for row in parse(source, delivery)]

    monkeypatch.setattr(intake_module, "rows_of", rows_of)
    token, secret = source_of(client)
    intake = intake_on(runtime, [])

    async def scenario() -> list[list[str]]:
        source = await intake.sources.lookup(token)
        return await asyncio.gather(
            *(
                intake.submit(source, request(webhook(f"p-{n:02}"), secret, f"m{n}"))
                for n in range(intake_module.MAX_BATCH)
            )
        )

    results = run(intake, scenario)

    assert results == [[event_id] for _, event_id in inbox(runtime)]


@given(st.lists(st.integers(0, 3 * intake_module.MAX_BATCH_BYTES), min_size=1, max_size=40))
def test_a_batch_takes_up_to_max_batch_requests_and_max_batch_bytes_but_at_least_one(
    sizes: list[int],
) -> None:
    waiting = [pending_of_size(size) for size in sizes]

    taken = intake_module._batch_size(waiting)

    batch_bytes = sum(sizes[:taken])
    fits = batch_bytes <= intake_module.MAX_BATCH_BYTES or taken == 1
    full = taken == min(len(sizes), intake_module.MAX_BATCH) or (
        batch_bytes + sizes[taken] > intake_module.MAX_BATCH_BYTES
    )
    assert (taken >= 1, fits, full) == (True, True, True)


def pending_of_size(size: int) -> Any:
    row = dataclasses.replace(TEMPLATE_ROW, raw_body="x" * size)
    return intake_module._Pending(TEMPLATE_SOURCE, [row], None)  # type: ignore[arg-type]


TEMPLATE_SOURCE = SourceConfig("src_1", "org_1", "gen", "generic", {}, {})
TEMPLATE_ROW = InboxRow(
    id="evt_1",
    org_id="org_1",
    source_id="src_1",
    dedupe_key="k",
    provider_call_id="p-1",
    event=None,  # type: ignore[arg-type]
    raw_body="",
    content_type="application/json",
    received_at=datetime.now(UTC),
    due_at=datetime.now(UTC),
)
