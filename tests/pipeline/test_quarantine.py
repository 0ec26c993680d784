"""A failing event fails alone: the others of its message are applied, it is quarantined with
its reason (counted, listed by the API and the CLI), and `callwatch replay --quarantined`
applies it once the cause is gone. The sweeper never marks an unapplied event done."""

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text, update
from starlette.testclient import TestClient

from callwatch.calls import store as calls
from callwatch.cli.main import main
from callwatch.db import transaction
from callwatch.intake.inbox import InboxRow, store
from callwatch.intake.receiver import _row
from callwatch.pipeline import sweeper
from callwatch.providers.base import SourceConfig
from callwatch.providers.generic import GenericProvider
from callwatch.queue import Producer
from callwatch.runtime import Runtime, utcnow
from callwatch.settings import Settings
from callwatch.tables import Call, InboxEvent
from tests.factories import Tenant, tenant, webhook_request
from tests.observability.test_endpoints import samples

LONG_AGENT = "a" * 300  # calls.agent_id is varchar(200)


def generic_row(owner: Tenant, call_id: str, agent_id: str, n: int) -> InboxRow:
    """An event stored as intake stores it, but without intake's checks: as a row accepted
    before them (or by a bug) sits in an upgraded inbox."""
    body = {
        "type": "call.status_changed",
        "timestamp": (datetime(2026, 12, 1, 9, tzinfo=UTC) + timedelta(seconds=n)).isoformat(),
        "data": {"call_id": call_id, "status": "in_progress", "agent_id": agent_id},
    }
    request = webhook_request(json.dumps(body).encode(), utcnow())
    [event] = GenericProvider().parse(request, f"msg_{call_id}")
    source = SourceConfig(owner.source_id, owner.org_id, owner.source, "generic", {}, {})
    return _row(source, event, request)


def until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not done in time"
        time.sleep(0.1)


def inbox(runtime: Runtime) -> dict[str, tuple[bool, bool, str | None]]:
    """Inbox id → (applied, quarantined, last error)."""
    with runtime.sessions() as session:
        rows = session.execute(
            select(
                InboxEvent.id,
                InboxEvent.processed_at,
                InboxEvent.quarantined_at,
                InboxEvent.last_error,
            )
        )
        return {row[0]: (row[1] is not None, row[2] is not None, row[3]) for row in rows}


def agents(runtime: Runtime) -> dict[str, str | None]:
    with runtime.sessions() as session:
        return dict(session.execute(select(Call.provider_call_id, Call.agent_id)).all())


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLWATCH_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CALLWATCH_REDIS_URL", settings.broker_url)
    monkeypatch.setenv("CALLWATCH_SECRET_KEY", "test-secret-key")
    monkeypatch.setenv("CALLWATCH_DATA_DIR", str(settings.data_dir))


@contextlib.contextmanager
def too_long_for_its_column() -> Iterator[Callable[[], None] | None]:
    """The fault as it was found: Postgres refuses a 300-character agent_id (varchar(200)).
    Its cause is the schema, so a replay puts it back in quarantine."""
    yield None


PG_REFUSAL = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.provider_call_id = 'acme-poison' THEN RAISE EXCEPTION 'refused'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON calls
    FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""
SQLITE_REFUSAL = """
CREATE TRIGGER refuse_poison BEFORE INSERT ON calls WHEN NEW.provider_call_id = 'acme-poison'
BEGIN SELECT RAISE(ABORT, 'refused'); END;
"""


@contextlib.contextmanager
def refused_by_a_trigger(settings: Settings) -> Iterator[Callable[[], None] | None]:
    """A database refusal of one call's row, on either database; removed by dropping it."""
    engine = create_engine(settings.database_url.replace("postgresql://", "postgresql+psycopg://"))
    postgres = engine.dialect.name == "postgresql"

    def drop() -> None:
        with engine.begin() as connection:
            connection.execute(
                text("DROP TRIGGER IF EXISTS refuse_poison" + (" ON calls" * postgres))
            )
            if postgres:
                connection.execute(text("DROP FUNCTION IF EXISTS refuse_poison"))

    with engine.begin() as connection:
        if postgres:
            connection.execute(text(PG_REFUSAL))
        else:
            connection.exec_driver_sql(SQLITE_REFUSAL)
    try:
        yield drop
    finally:
        drop()
        engine.dispose()


@contextlib.contextmanager
def a_bug_applying_it() -> Iterator[Callable[[], None] | None]:
    """A bug that fails applying one call's events, on either database; fixed by undoing it."""
    buggy = calls._apply_state

    def apply_state(call: Call, *args: Any) -> Any:
        if call.provider_call_id == "acme-poison":
            raise RuntimeError(f"a bug with {call.agent_id}")
        return buggy(call, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(calls, "_apply_state", apply_state)
        yield patch.undo


TOO_LONG, REFUSED, BUG = "too long for its column", "refused by the database", "a bug"


def reason_of(poison: str, postgres: bool) -> str:
    if poison == TOO_LONG:
        return "agent_id: 300 characters, at most 200 can be stored"
    if poison == REFUSED:
        if postgres:
            return "the database refused it (RaiseException, SQLSTATE P0001)"
        return "the database refused it (IntegrityError)"
    return "applying it failed (RuntimeError)"


@pytest.mark.parametrize("poison", [TOO_LONG, REFUSED, BUG])
def test_a_poisoned_event_fails_alone_and_applies_after_replay(
    poison: str,
    client: TestClient,
    worker: None,
    runtime: Runtime,
    settings: Settings,
    cli: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    postgres = settings.database_url.startswith("postgresql")
    if poison == TOO_LONG and not postgres:
        pytest.skip("SQLite does not enforce varchar lengths")
    acme, globex = tenant(client, "acme"), tenant(client, "globex")
    innocent = [generic_row(acme, f"acme-{n}", "sales", n) for n in range(5)]
    innocent += [generic_row(globex, f"globex-{n}", "support", n) for n in range(20)]
    agent = LONG_AGENT if poison == TOO_LONG else "sales"
    poisoned = generic_row(acme, "acme-poison", agent, 99)
    rows = [*innocent[:12], poisoned, *innocent[12:]]
    with transaction(runtime.sessions) as session:
        store(session, rows)
    cause: contextlib.AbstractContextManager[Callable[[], None] | None] = {
        TOO_LONG: too_long_for_its_column,
        REFUSED: lambda: refused_by_a_trigger(settings),
        BUG: a_bug_applying_it,
    }[poison]()
    reason = reason_of(poison, postgres)
    with cause as remove_cause:
        producer = Producer(settings.broker_url)
        producer.ingest([row.id for row in rows])  # one queue message, as intake sends them

        until(lambda: len([s for s in inbox(runtime).values() if s[0] or s[1]]) == len(rows))
        assert inbox(runtime) == {row.id: (True, False, None) for row in innocent} | {
            poisoned.id: (False, True, reason)
        }
        assert agents(runtime) == {f"acme-{n}": "sales" for n in range(5)} | {
            f"globex-{n}": "support" for n in range(20)
        }

        metrics = samples(client.get("/metrics").text)
        assert (metrics["callwatch_inbox_quarantined"], metrics["callwatch_inbox_pending"]) == (
            "1",
            "0",
        )

        listed = client.get("/api/quarantine", headers=acme.headers)
        assert listed.status_code == 200
        quarantined_at = quarantined_at_of(runtime, poisoned.id)
        assert listed.json() == {
            "items": [
                {
                    "id": poisoned.id,
                    "source": "main",
                    "provider": "generic",
                    "provider_call_id": "acme-poison",
                    "call_id": None,
                    "received_at": poisoned.received_at.isoformat().replace("+00:00", "Z"),
                    "quarantined_at": quarantined_at.isoformat().replace("+00:00", "Z"),
                    "reason": reason,
                }
            ],
            "total": 1,
            "skip": 0,
            "limit": 100,
            "page": None,
        }
        other_org = client.get("/api/quarantine", headers=globex.headers).json()
        assert (other_org["items"], other_org["total"]) == ([], 0)

        code = main(
            ["quarantine", "list", "--url", "http://testserver", "--api-key", acme.key],
            http=client,
        )
        out = capsys.readouterr().out.splitlines()
        assert code == 0
        assert [line.split() for line in out] == [
            ["QUARANTINED", "(UTC)", "EVENT", "SOURCE", "PROVIDER", "CALL", "ID", "CALL", "REASON"],
            [
                *quarantined_at.strftime("%Y-%m-%d %H:%M:%S").split(),
                poisoned.id,
                "main",
                "acme-poison",
                "-",
                *reason.split(),
            ],
            ["1", "of", "1", "quarantined", "events"],
        ]

        received = poisoned.received_at.strftime("%Y-%m-%d %H:%M:%S")
        assert main(["replay", "--quarantined", "--org", "globex"]) == 0
        assert capsys.readouterr().out.splitlines() == ["no quarantined events to replay"]
        assert main(["replay", "--quarantined", "--dry-run"]) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"{poisoned.id}  acme-poison  {acme.org_id}  {received}  {reason}",
            "1 quarantined event would be sent to the workers again (dry run: nothing changed)",
        ]
        assert quarantined_at_of(runtime, poisoned.id) == quarantined_at

        if remove_cause is not None:
            remove_cause()
        assert main(["replay", "--quarantined", "--org", "acme"]) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"{poisoned.id}  acme-poison  {acme.org_id}  {received}  {reason}",
            "sent 1 quarantined event to the workers again: each leaves the quarantine once it "
            "applies (`callwatch quarantine list` shows those still there)",
        ]
        if remove_cause is None:  # still too long: back in quarantine, with the same reason
            until(lambda: quarantined_at_of(runtime, poisoned.id) > quarantined_at)
            assert inbox(runtime)[poisoned.id] == (False, True, reason)
            return
        until(lambda: inbox(runtime)[poisoned.id] == (True, False, None))
        assert agents(runtime)["acme-poison"] == "sales"
        metrics = samples(client.get("/metrics").text)
        assert metrics["callwatch_inbox_quarantined"] == "0"
        assert client.get("/api/quarantine", headers=acme.headers).json()["items"] == []


def quarantined_at_of(runtime: Runtime, inbox_id: str) -> datetime:
    with runtime.sessions() as session:
        found = session.scalar(select(InboxEvent.quarantined_at).where(InboxEvent.id == inbox_id))
    assert found is not None
    return found


def test_the_sweeper_quarantines_what_ran_out_of_deliveries_and_never_sends_it_again(
    client: TestClient, runtime: Runtime
) -> None:
    acme = tenant(client, "acme")
    spent, fresh = generic_row(acme, "spent", "sales", 1), generic_row(acme, "fresh", "sales", 2)
    now = utcnow()
    with transaction(runtime.sessions) as session:
        store(session, [spent, fresh])
        session.execute(
            update(InboxEvent)
            .where(InboxEvent.id == spent.id)
            .values(attempts=sweeper.MAX_INBOX_DELIVERIES)
        )
    for _ in range(2):
        with transaction(runtime.sessions) as session:
            overdue = sweeper.sweep(session, now + timedelta(seconds=10), grace_s=1.0)
        assert overdue.inbox_ids == ([fresh.id] if _ == 0 else [])
    assert {key: value for key, value in inbox(runtime).items()} == {
        spent.id: (False, True, "not applied after 10 deliveries"),
        fresh.id: (False, False, None),
    }
    metrics = samples(client.get("/metrics").text)
    assert (metrics["callwatch_inbox_quarantined"], metrics["callwatch_inbox_pending"]) == (
        "1",
        "1",
    )
