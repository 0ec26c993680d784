"""`callwatch replay`: failed and assembled calls assembled again from their stored events."""

import copy
import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import select
from starlette.testclient import TestClient

from callwatch.cli.main import main
from callwatch.downstream import streams
from callwatch.pipeline import replay
from callwatch.runtime import Runtime, utcnow
from callwatch.settings import Settings
from callwatch.simulator import DetailServer, SimCall, events_for
from callwatch.tables import Call, InboxEvent
from tests.conftest import create_org, create_source, path_of, signed
from tests.factories import in_state, wait_for_call
from tests.pipeline.test_steps import hand_call

# What a replay changes in a record otherwise rebuilt the same (docs/operations.md, `replay`).
CHANGES = ("updated_at", "assembly.assembled_at", "recording.available_at")


@dataclasses.dataclass
class Org:
    key: str
    sources: dict[str, dict[str, Any]]  # by name, as POST /api/sources answered


@pytest.fixture
def api(client: TestClient, worker: None) -> Iterator[DetailServer]:
    """The platforms' detail API on loopback, with a real worker assembling calls."""
    with DetailServer() as server:
        yield server


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """`callwatch` run in this process sees the test's database and Redis."""
    monkeypatch.setenv("CALLWATCH_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CALLWATCH_REDIS_URL", settings.broker_url)
    monkeypatch.setenv("CALLWATCH_SECRET_KEY", "test-secret-key")
    monkeypatch.setenv("CALLWATCH_DATA_DIR", str(settings.data_dir))


def org(client: TestClient, server: DetailServer, name: str, *sources: str) -> Org:
    key = create_org(client, name)
    made = {
        source: create_source(client, key, name=source, settings={"detail_url": server.detail_url})
        for source in sources
    }
    return Org(key, made)


def play(client: TestClient, source: dict[str, Any], call: SimCall) -> None:
    for body in events_for(call, embed_detail=False):
        raw = json.dumps(body).encode()
        response = client.post(
            path_of(source["webhook_url"]),
            content=raw,
            headers=signed(source["webhook_secret"], raw),
        )
        assert response.status_code == 202, response.text


def started(call: SimCall, later: timedelta) -> SimCall:
    """The same call, `later`."""
    return dataclasses.replace(
        call,
        started_at=call.started_at + later,
        ringing_at=call.ringing_at + later,
        answered_at=call.answered_at and call.answered_at + later,
        ended_at=call.ended_at + later,
    )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["replay", *argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def record(client: TestClient, owner: Org, call_id: str, state: str) -> dict[str, Any]:
    """The call's record once its assembly is in `state` with all of its events applied."""
    events = len(events_for(hand_call(), embed_detail=False))
    return wait_for_call(
        client,
        owner.key,
        call_id,
        lambda record: in_state(state)(record) and len(record["timeline"]) == events,
    )


def without_changes(record: dict[str, Any]) -> dict[str, Any]:
    """The record with what a replay changes blanked out."""
    kept = copy.deepcopy(record)
    for path in CHANGES:
        *parents, leaf = path.split(".")
        holder = kept
        for parent in parents:
            holder = holder[parent]
        holder[leaf] = "(changes)"
    return kept


def as_call(record: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """`record` as if it were `other`'s call: the two ids swapped for `other`'s."""
    text = json.dumps(record)
    text = text.replace(record["id"], other["id"])
    return json.loads(text.replace(record["provider_call_id"], other["provider_call_id"]))  # type: ignore[no-any-return]


def unchanged(row: dict[str, Any]) -> dict[str, Any]:
    """A call's row without what a replay changes: times, and the record (compared apart)."""
    changes = {"updated_at", "assembled_at", "recording_deadline", "record"}
    return {column: value for column, value in row.items() if column not in changes}


def rows(runtime: Runtime) -> dict[str, dict[str, Any]]:
    """Every call's row, every column, by provider call id."""
    with runtime.sessions() as session:
        return {
            call.provider_call_id: {
                column.key: getattr(call, column.key) for column in Call.__table__.columns
            }
            for call in session.scalars(select(Call))
        }


def stream_entries(settings: Settings, call_id: str, expected: int) -> list[str]:
    """The types of the call's entries in `callwatch:calls`, once there are `expected` (they are
    added just after the commit), or what there is after a few seconds."""
    client = redis.Redis.from_url(settings.broker_url, decode_responses=True)
    deadline = time.monotonic() + 5
    while True:
        entries: list[tuple[str, dict[str, str]]] = client.xrange(streams.CALLS_STREAM)  # type: ignore[assignment]
        types = [fields["type"] for _, fields in entries if fields.get("call_id") == call_id]
        if len(types) >= expected or time.monotonic() > deadline:
            return types
        time.sleep(0.05)


def line(record: dict[str, Any], org_id: str, state: str, error: str = "") -> str:
    """How replay lists a call (its state and error before the replay)."""
    started = datetime.fromisoformat(record["initiated_at"]).strftime("%Y-%m-%d %H:%M:%S")
    return "  ".join(
        [record["id"], record["provider_call_id"], org_id, started, state, error]
    ).rstrip()


def assembled_at(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["assembly"]["assembled_at"])


def http_500(server: DetailServer, call_id: str) -> str:
    return f"GET {server.detail_url.replace('{call_id}', call_id)}: HTTP 500"


def test_a_call_failed_in_an_outage_is_assembled_by_replay_as_without_the_outage(
    client: TestClient,
    api: DetailServer,
    cli: None,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme = org(client, api, "acme", "main")
    down, twin = hand_call("down-1"), hand_call("twin-1")
    api.add(down, always_fail=True)
    api.add(twin)
    play(client, acme.sources["main"], down)
    play(client, acme.sources["main"], twin)
    failed = record(client, acme, "down-1", "failed")
    without_outage = record(client, acme, "twin-1", "assembled")
    assert failed["assembly"] == {
        "state": "failed",
        "attempts": 3,
        "assembled_at": None,
        "last_error": http_500(api, "down-1"),
    }
    assert stream_entries(settings, failed["id"], 0) == []
    api.add(down)  # the platform is back

    code, out, err = run(capsys, "--failed")

    assert (code, out, err) == (
        0,
        [
            line(failed, failed["org_id"], "failed", http_500(api, "down-1")),
            "replayed 1 call: back to pending, queued for assembly",
        ],
        "\rreplaying 1/1\n",
    )
    replayed = record(client, acme, "down-1", "assembled")
    assert without_changes(replayed) == without_changes(as_call(without_outage, replayed))
    assert replayed["assembly"] == {
        "state": "assembled",
        "attempts": 1,
        "assembled_at": replayed["assembly"]["assembled_at"],
        "last_error": None,
    }
    assert assembled_at(replayed) > assembled_at(without_outage)
    assert stream_entries(settings, replayed["id"], 1) == ["call.assembled"]


def test_replaying_an_assembled_call_rebuilds_the_same_record_and_again_changes_nothing_more(
    client: TestClient,
    api: DetailServer,
    cli: None,
    runtime: Runtime,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme = org(client, api, "acme", "main")
    call = hand_call("ok-1")
    api.add(call)
    play(client, acme.sources["main"], call)
    first = record(client, acme, "ok-1", "assembled")
    first_row = rows(runtime)["ok-1"]
    org_id = first["org_id"]

    by_id = run(capsys, first["id"])
    second = record(client, acme, "ok-1", "assembled")
    second_row = rows(runtime)["ok-1"]
    by_provider_id = run(capsys, "ok-1")
    third = record(client, acme, "ok-1", "assembled")
    third_row = rows(runtime)["ok-1"]

    done = ["replayed 1 call: back to pending, queued for assembly"]
    assert by_id == (0, [line(first, org_id, "assembled"), *done], "\rreplaying 1/1\n")
    assert by_provider_id == (0, [line(first, org_id, "assembled"), *done], "\rreplaying 1/1\n")
    assert without_changes(second) == without_changes(first)
    assert without_changes(third) == without_changes(second)
    assert assembled_at(first) < assembled_at(second) < assembled_at(third)
    assert [unchanged(row) for row in (second_row, third_row)] == [unchanged(first_row)] * 2
    assert api.requests("ok-1") == 3  # each replay fetched the details again
    assert stream_entries(settings, first["id"], 3) == ["call.assembled"] * 3
    with runtime.sessions() as session:
        events = session.scalars(select(InboxEvent.call_id)).all()
    assert (list(rows(runtime)), events) == (["ok-1"], [first["id"]] * 4)


def test_dry_run_lists_what_would_be_replayed_and_changes_nothing(
    client: TestClient,
    api: DetailServer,
    cli: None,
    runtime: Runtime,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme = org(client, api, "acme", "main")
    down, ok = hand_call("down-1"), started(hand_call("ok-1"), timedelta(hours=1))
    api.add(down, always_fail=True)
    api.add(ok)
    play(client, acme.sources["main"], down)
    play(client, acme.sources["main"], ok)
    failed = record(client, acme, "down-1", "failed")
    assembled = record(client, acme, "ok-1", "assembled")
    before = rows(runtime), api.requests("down-1"), api.requests("ok-1")

    everything_failed = run(capsys, "--failed", "--dry-run")
    both = run(capsys, "ok-1", failed["id"], "--dry-run")

    org_id = failed["org_id"]
    failed_line = line(failed, org_id, "failed", http_500(api, "down-1"))
    assert everything_failed == (
        0,
        [failed_line, "1 call would be replayed (dry run: nothing changed)"],
        "",
    )
    assert both == (
        0,
        [
            line(assembled, org_id, "assembled"),
            failed_line,
            "2 calls would be replayed (dry run: nothing changed)",
        ],
        "",
    )
    assert redis.Redis.from_url(settings.broker_url).llen("celery") == 0
    assert (rows(runtime), api.requests("down-1"), api.requests("ok-1")) == before
    assert record(client, acme, "down-1", "failed") == failed


def test_filters_choose_exactly_their_calls_and_never_another_orgs(
    client: TestClient,
    api: DetailServer,
    cli: None,
    runtime: Runtime,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    acme = org(client, api, "acme", "main", "backup")
    globex = org(client, api, "globex", "main")
    day, hour = timedelta(days=1), timedelta(hours=1)
    failing = {  # 2026-11-20 10:00 UTC plus
        "a1": (acme, "main", timedelta(0)),
        "a2": (acme, "main", day),
        "b1": (acme, "backup", day + hour),
        "g1": (globex, "main", day + 2 * hour),
        "a3": (acme, "main", 2 * day),
    }
    for call_id, (owner, source, later) in failing.items():
        call = started(hand_call(call_id), later)
        api.add(call, always_fail=True)
        play(client, owner.sources[source], call)
    api.add(started(hand_call("a4"), day))
    play(client, acme.sources["main"], started(hand_call("a4"), day))
    record(client, acme, "a4", "assembled")
    for call_id, (owner, _, _) in failing.items():
        record(client, owner, call_id, "failed")
    backup_id = acme.sources["backup"]["id"]
    cases: dict[tuple[str, ...], list[str]] = {
        (): ["a1", "a2", "b1", "g1", "a3"],
        ("--org", "acme"): ["a1", "a2", "b1", "a3"],
        ("--org", "globex"): ["g1"],
        ("--org", "acme", "--source", "backup"): ["b1"],
        ("--source", backup_id): ["b1"],
        ("--since", "2026-11-21"): ["a2", "b1", "g1", "a3"],
        ("--until", "2026-11-21"): ["a1", "a2", "b1", "g1"],
        ("--since", "2026-11-21T10:30:00Z", "--until", "2026-11-21T12:00:00Z"): ["b1", "g1"],
        ("--org", "acme", "--since", "2026-11-21", "--until", "2026-11-21"): ["a2", "b1"],
    }

    def chosen(options: tuple[str, ...]) -> list[str]:
        code, out, _ = run(capsys, "--failed", "--dry-run", *options)
        assert code == 0
        return [listed.split("  ")[1] for listed in out[:-1]]

    assert {options: chosen(options) for options in cases} == cases
    assert run(capsys, "--failed", "--dry-run", "--org", "globex", "--source", backup_id) == (
        2,
        [],
        f"callwatch: no source '{backup_id}' in that org (give a source id, or its name with "
        "--org; `callwatch source list --org ORG` shows them)\n",
    )

    for call_id in failing:
        api.add(started(hand_call(call_id), failing[call_id][2]))  # the platform is back
    monkeypatch.setattr("callwatch.cli.replays.REPLAY_BATCH", 2)
    before = rows(runtime)

    code, out, err = run(capsys, "--failed", "--org", "acme", "--since", "2026-11-21")

    assert (code, [listed.split("  ")[1] for listed in out[:-1]], out[-1], err) == (
        0,
        ["a2", "b1", "a3"],
        "replayed 3 calls: back to pending, queued for assembly",
        "\rreplaying 2/3\rreplaying 3/3\n",
    )
    for call_id in ("a2", "b1", "a3"):
        record(client, acme, call_id, "assembled")
    after = rows(runtime)
    assert {call_id: after[call_id] == before[call_id] for call_id in after} == {
        "a1": True,
        "a2": False,
        "b1": False,
        "g1": True,
        "a3": False,
        "a4": True,
    }


def test_unknown_or_foreign_call_ids_are_one_line_and_nothing_is_replayed(
    client: TestClient,
    api: DetailServer,
    cli: None,
    runtime: Runtime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme = org(client, api, "acme", "main")
    globex = org(client, api, "globex", "main")
    api.add(hand_call("mine"), always_fail=True)
    api.add(hand_call("theirs"), always_fail=True)
    play(client, acme.sources["main"], hand_call("mine"))
    play(client, globex.sources["main"], hand_call("theirs"))
    record(client, acme, "mine", "failed")
    theirs = record(client, globex, "theirs", "failed")
    before = rows(runtime)

    unknown = run(capsys, "mine", "nope")
    foreign = run(capsys, "mine", theirs["id"], "--org", "acme")
    no_org = run(capsys, "mine", "--org", "initech")
    neither = run(capsys)
    both = run(capsys, "mine", "--failed")
    bad_time = run(capsys, "--failed", "--since", "yesterday")

    hint = "(give callwatch ids or provider call ids; `callwatch calls list` shows them)"
    assert unknown == (2, [], f"callwatch: no call 'nope' {hint}; nothing was replayed\n")
    assert foreign == (
        2,
        [],
        f"callwatch: no call '{theirs['id']}' in org 'acme' {hint}; nothing was replayed\n",
    )
    assert no_org == (2, [], "callwatch: no org 'initech'\n")
    assert neither == (2, [], "callwatch: give call ids, --failed or --quarantined, one of them\n")
    assert both == (2, [], "callwatch: give call ids, --failed or --quarantined, one of them\n")
    assert bad_time == (
        2,
        [],
        "callwatch: since: Value error, expected an ISO 8601 date or date-time, e.g. 2026-11-20\n",
    )
    assert rows(runtime) == before


def test_a_call_not_finished_is_left_alone_and_said_so(
    client: TestClient,
    api: DetailServer,
    cli: None,
    runtime: Runtime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme = org(client, api, "acme", "main")
    ringing = hand_call("ringing-1")
    play_first = events_for(ringing, embed_detail=False)[:2]  # initiated, ringing: not ended
    for body in play_first:
        raw = json.dumps(body).encode()
        source = acme.sources["main"]
        headers = signed(source["webhook_secret"], raw)
        assert client.post(path_of(source["webhook_url"]), content=raw, headers=headers).is_success
    pending = wait_for_call(client, acme.key, "ringing-1", lambda r: len(r["timeline"]) == 2)
    before = rows(runtime)

    code, out, err = run(capsys, "ringing-1")

    assert (code, out, err) == (
        1,
        ["nothing replayed; 1 call left alone"],
        f"{pending['id']}: not replayed: it has not ended (no final event stored yet)\n",
    )
    assert rows(runtime) == before


def test_without_redis_or_database_it_says_what_to_set(
    client: TestClient,
    api: DetailServer,
    cli: None,
    runtime: Runtime,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    acme = org(client, api, "acme", "main")
    api.add(hand_call("down-1"), always_fail=True)
    play(client, acme.sources["main"], hand_call("down-1"))
    failed = record(client, acme, "down-1", "failed")
    before = rows(runtime)
    monkeypatch.delenv("CALLWATCH_REDIS_URL")

    no_redis = run(capsys, "--failed")
    dry_run = run(capsys, "--failed", "--dry-run")
    dead_redis = run(capsys, "--failed", "--redis-url", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CALLWATCH_DATABASE_URL", f"sqlite:///{tmp_path}/nowhere.db")
    no_database = run(capsys, "--failed")

    assert no_redis == (
        2,
        [],
        "callwatch: no Redis URL: pass --redis-url or set CALLWATCH_REDIS_URL (the Redis that "
        "callwatch's workers use; `callwatch up` prints it)\n",
    )
    assert dry_run == (
        0,
        [
            line(failed, failed["org_id"], "failed", http_500(api, "down-1")),
            "1 call would be replayed (dry run: nothing changed)",
        ],
        "",
    )
    assert dead_redis[:2] == (2, [])
    assert dead_redis[2].startswith("callwatch: cannot reach Redis at redis://127.0.0.1:1/0 (")
    assert dead_redis[2].endswith("); nothing was replayed\n")
    assert dead_redis[2].count("\n") == 1
    assert no_database == (
        2,
        [],
        f"callwatch: no database at {tmp_path}/nowhere.db: run this where `callwatch up` "
        "runs, set CALLWATCH_DATABASE_URL, or run `callwatch migrate` to create it\n",
    )
    assert not (tmp_path / "nowhere.db").exists()
    assert rows(runtime) == before


def test_replay_is_a_data_function_that_leaves_the_commit_to_its_caller(
    client: TestClient, api: DetailServer, runtime: Runtime
) -> None:
    acme = org(client, api, "acme", "main")
    api.add(hand_call("down-1"), always_fail=True)
    play(client, acme.sources["main"], hand_call("down-1"))
    failed = record(client, acme, "down-1", "failed")
    before = rows(runtime)

    with runtime.sessions() as session:
        plan = replay.plan(session, replay.Selection(failed=True))
        chosen = [target.call_id for target in plan.replay]
        ready = replay.replay(session, chosen, utcnow())
        state = session.get_one(Call, failed["id"]).assembly_state
        session.rollback()

    assert (chosen, ready, state, plan.left_alone) == (
        [failed["id"]],
        [failed["id"]],
        "pending",
        {},
    )
    assert rows(runtime) == before
