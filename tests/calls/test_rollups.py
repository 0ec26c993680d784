"""Stats rollups: each call's share, moved in the transaction that changes the call, never lost
or counted twice; a rebuild from the calls gives exactly what the worker kept up."""

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select, text
from starlette.testclient import TestClient

from callwatch import migrate
from callwatch.calls import rollups
from callwatch.calls.rollups import Contribution
from callwatch.cli.main import main
from callwatch.db import make_engine
from callwatch.model import histogram
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.simulator import DetailServer, SimCall, events_for
from callwatch.tables import (
    ROLLUP_COUNTERS,
    WHOLE_ORG,
    Base,
    stats_agent_bins,
    stats_bins,
    stats_org_rollups,
    stats_rollups,
)
from tests.conftest import path_of, signed
from tests.factories import T0, in_state, wait_for_call
from tests.orgs.test_migration import ROWS, _table_of, fresh_database  # noqa: F401
from tests.pipeline.test_replay import api, cli, hand_call, org, record  # noqa: F401

ROW: dict[str, Any] = {
    "org_id": "org_1",
    "started_at": T0 + timedelta(minutes=90),
    "agent_id": "bot",
    "source_id": "src_1",
    "direction": "inbound",
    "status": "completed",
    "end_reason": "user_hangup",
    "cost_currency": "USD",
    "answered_at": T0,
    "cost_total": 0.35,
    "cost_llm": 0.1,
    "cost_stt": None,
    "cost_tts": 0.05,
    "cost_telephony": 0.2,
    "cost_platform": None,
    "duration_s": 61.5,
    "latency_turn_p50_ms": 800.0,
    "latency_turn_p95_ms": None,
    "time_to_first_word_ms": 0.0,
}


def play(client: TestClient, source: dict[str, Any], call: SimCall) -> None:
    """The call's webhooks, each sent again after a 503 as the platforms do: on a busy machine
    intake's deadline may pass while the worker holds SQLite's lock."""
    for body in events_for(call, embed_detail=False):
        raw = json.dumps(body).encode()
        for _ in range(20):
            headers = signed(source["webhook_secret"], raw)
            response = client.post(path_of(source["webhook_url"]), content=raw, headers=headers)
            if response.status_code != 503:
                break
            time.sleep(0.2)
        assert response.status_code == 202, response.text


def test_a_calls_share_is_its_bucket_counts_sums_in_millionths_and_bins() -> None:
    share = rollups.contribution(ROW)

    assert share == Contribution(
        org_id="org_1",
        started_at=T0 + timedelta(minutes=90),
        dimensions=("bot", "src_1", "inbound", "completed", "user_hangup", "USD"),
        # calls, answered, costed, cost total/llm/stt/tts/telephony/platform, then per metric
        # (duration, turn p50, turn p95, first word) its count and sum
        counters=(
            *(1, 1, 1, 350_000, 100_000, 0, 50_000, 200_000, 0),
            *(1, 61_500_000, 1, 800_000_000, 0, 0, 1, 0),
        ),
        bins=((0, histogram.bin_of(61.5)), (1, histogram.bin_of(800.0)), (3, 0)),
    )
    assert rollups.contribution(None) is None
    assert len(share.counters) == len(ROLLUP_COUNTERS)


def test_a_call_without_cost_or_values_counts_once_and_no_sum() -> None:
    row = ROW | {"agent_id": None, "status": None, "answered_at": None, "cost_total": None}
    row |= {"duration_s": None, "latency_turn_p50_ms": None, "time_to_first_word_ms": None}

    share = rollups.contribution(row)

    assert share is not None
    assert share.dimensions == ("", "src_1", "inbound", "", "user_hangup", "USD")
    assert share.counters == (1,) + (0,) * (len(ROLLUP_COUNTERS) - 1)
    assert share.bins == ()


def rollup_rows(runtime: Runtime) -> list[dict[str, Any]]:
    """Every bucket and bin row that holds anything (a share moved away leaves zeros)."""
    with runtime.sessions() as session:
        buckets = [
            dict(row._mapping)
            for table in (stats_rollups, stats_org_rollups)
            for row in session.execute(select(table))
            if any(row._mapping[name] for name in ROLLUP_COUNTERS)
        ]
        bins = [
            dict(row._mapping)
            for table in (stats_bins, stats_agent_bins)
            for row in session.execute(select(table).where(table.c["count"] != 0))
        ]
    key = lambda row: sorted((name, str(value)) for name, value in row.items())  # noqa: E731
    return sorted(buckets, key=key) + sorted(bins, key=key)


def test_a_share_added_then_taken_away_leaves_nothing(client: TestClient, runtime: Runtime) -> None:
    org(client, DetailServer(), "acme")
    share = rollups.contribution(ROW | {"org_id": _org_id(runtime)})
    with runtime.sessions.begin() as session:
        rollups.move(session, [(None, share)])
    # per tier its bucket by dimensions and the whole org's, and its 3 values' bins by
    # dimensions, whole-org and by agent
    assert len(rollup_rows(runtime)) == len(rollups.TIERS) * (2 + 3 * 3)

    with runtime.sessions.begin() as session:
        rollups.move(session, [(share, None)])

    assert rollup_rows(runtime) == []


def _org_id(runtime: Runtime) -> str:
    from callwatch.tables import Org

    with runtime.sessions() as session:
        return session.scalars(select(Org.id)).one()


def test_concurrent_moves_into_one_bucket_lose_nothing(
    client: TestClient, runtime: Runtime
) -> None:
    org(client, DetailServer(), "acme")
    share = rollups.contribution(ROW | {"org_id": _org_id(runtime)})
    threads, moves = 6, 15
    errors: list[BaseException] = []

    def add() -> None:
        try:
            for _ in range(moves):
                with runtime.sessions.begin() as session:
                    rollups.move(session, [(None, share)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=add) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()

    assert errors == []
    with runtime.sessions() as session:
        calls = session.execute(select(stats_rollups.c.tier, stats_rollups.c.calls)).all()
        org_calls = session.execute(
            select(stats_org_rollups.c.tier, stats_org_rollups.c.calls)
        ).all()
        bins = session.execute(
            select(stats_bins.c["count"]).where(stats_bins.c.scope == WHOLE_ORG)
        ).scalars()
        agent_bins = session.execute(select(stats_agent_bins.c["count"])).scalars()
        assert sorted(calls) == [(tier, threads * moves) for tier in rollups.TIERS]
        assert sorted(org_calls) == sorted(calls)
        assert set(bins) == {threads * moves}
        assert set(agent_bins) == {threads * moves}


@pytest.mark.usefixtures("cli")
def test_rebuilt_rollups_equal_the_ones_the_worker_kept(
    client: TestClient,
    api: DetailServer,  # noqa: F811
    runtime: Runtime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Assembly, a late event (the record rebuilt), a replay (the record forgotten, then
    assembled again) and a call that fails assembly, through the real worker."""
    acme = org(client, api, "acme", "main")
    calls = [hand_call(f"mix-{index}") for index in range(4)]
    for index, call in enumerate(calls):
        api.add(call, always_fail=index == 3)
        play(client, acme.sources["main"], call)
    for call in calls[:3]:
        record(client, acme, call.call_id, "assembled")
    record(client, acme, calls[3].call_id, "failed")
    play(client, acme.sources["main"], calls[0])  # its events again: the record rebuilt
    replayed = record(client, acme, calls[1].call_id, "assembled")
    assert main(["replay", replayed["id"]]) == 0
    wait_for_call(
        client,
        acme.key,
        replayed["id"],
        lambda again: (
            in_state("assembled")(again)
            and again["assembly"]["assembled_at"] != replayed["assembly"]["assembled_at"]
        ),
    )
    kept = rollup_rows(runtime)
    capsys.readouterr()

    assert main(["stats", "rebuild", "--batch", "2"]) == 0

    assert capsys.readouterr().out == "stats rollups rebuilt from 4 calls\n"
    assert rollup_rows(runtime) == kept
    buckets = [row for row in kept if "calls" in row and row["tier"] == 1536]
    assert sum(row["calls"] for row in buckets) == 4 * 2  # by dimensions, and the whole org's


def test_settings_default_reads_calls_for_small_windows(settings: Settings) -> None:
    assert settings.stats_exact_up_to == 20_000


def stats_tables_differences(url: str) -> list[Any]:
    engine = make_engine(url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    tables = ("stats_rollups", "stats_org_rollups", "stats_bins", "stats_agent_bins")
    return [d for d in differences if _table_of(d) in tables]


def test_the_migrated_rollup_tables_are_the_ones_tables_declares(database_url: str) -> None:
    assert stats_tables_differences(database_url) == []


def test_migration_0012_fills_the_rollups_from_the_calls_stored(
    fresh_database: str,  # noqa: F811
) -> None:
    config = migrate.config(fresh_database)
    command.upgrade(config, "0011")
    engine = make_engine(fresh_database)
    with engine.begin() as connection:
        for row in MIGRATION_ROWS:
            connection.execute(text(row))

    command.upgrade(config, "0012")

    with engine.connect() as connection:
        buckets = connection.execute(
            select(stats_rollups.c.tier, stats_rollups.c.status, stats_rollups.c.calls)
        ).all()
        bins = connection.execute(select(stats_bins.c["count"])).scalars().all()
    engine.dispose()
    assert sorted(buckets) == [(tier, "completed", 1) for tier in rollups.TIERS]
    assert bins == [1] * len(rollups.TIERS) * 2  # its duration, by dimensions and whole-org
    command.downgrade(config, "0011")
    command.upgrade(config, "head")
    assert stats_tables_differences(fresh_database) == []


def test_migration_0016_sums_the_agent_bins_and_org_counters_from_the_rollups(
    fresh_database: str,  # noqa: F811
) -> None:
    config = migrate.config(fresh_database)
    before = ScriptDirectory.from_config(config).get_revision("0016").down_revision
    command.upgrade(config, "0011")
    engine = make_engine(fresh_database)
    with engine.begin() as connection:
        for row in MIGRATION_ROWS:
            connection.execute(text(row))
        connection.execute(
            text(MIGRATION_ROWS[-1].replace("call_1", "call_2").replace("p-1", "p-2"))
        )
    command.upgrade(config, str(before))  # 0012 filled stats_bins from the two calls

    command.upgrade(config, "0016")

    with engine.connect() as connection:
        table = stats_agent_bins
        agent_bins = connection.execute(
            select(table.c.agent_id, table.c.tier, table.c["count"])
        ).all()
        org = stats_org_rollups
        org_buckets = connection.execute(
            select(org.c.tier, org.c.status, org.c.calls, org.c.duration_s_sum)
        ).all()
    engine.dispose()
    assert sorted(agent_bins) == [("", tier, 2) for tier in rollups.TIERS]
    assert sorted(org_buckets) == [(tier, "completed", 2, 25_000_000) for tier in rollups.TIERS]
    command.downgrade(config, str(before))
    command.upgrade(config, "head")
    assert stats_tables_differences(fresh_database) == []


MIGRATION_ROWS = [
    *ROWS[:2],
    "INSERT INTO calls (id, org_id, source_id, provider, provider_call_id, started_at, status, "
    "duration_s, fields, assembly_state, assembly_attempts, assembly_failures, has_recording, "
    "created_at, updated_at) VALUES ('call_1', 'org_1', 'src_1', 'generic', 'p-1', "
    "CURRENT_TIMESTAMP, 'completed', 12.5, '{}', 'assembled', 1, 0, false, CURRENT_TIMESTAMP, "
    "CURRENT_TIMESTAMP)",
]
