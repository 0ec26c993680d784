"""Ops streams on a real Redis: entries, consumer groups, trimming, and the worker publishing."""

import json
import logging
from logging.handlers import BufferingHandler
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from callwatch.cli.embedded import free_port
from callwatch.downstream import streams
from callwatch.downstream.effects import StreamEntry
from callwatch.model.records import CallRecord, Latency, Recording
from callwatch.runtime import COUNTERS
from callwatch.settings import Settings
from callwatch.simulator import DetailServer, events_for
from tests.conftest import create_org, create_source, path_of, signed
from tests.factories import Tenant, in_state, record, wait_for_call
from tests.pipeline.test_steps import hand_call

OWNER = Tenant(org_id="org_1", key="", source_id="src_1", source="main")


@pytest.fixture
def client_redis(settings: Settings) -> Any:
    client = redis.Redis.from_url(settings.broker_url, decode_responses=True)
    yield client
    client.close()


def summary_of(call_id: str = "call_1", **fields: Any) -> dict[str, Any]:
    return streams.call_summary(record(OWNER, call_id, **fields))


def test_a_call_summary_is_the_small_part_of_its_record() -> None:
    assert summary_of() == {
        "id": "call_1",
        "org_id": "org_1",
        "source": "main",
        "provider": "generic",
        "provider_call_id": "p-call_1",
        "agent_id": "sales-bot",
        "status": "completed",
        "end_reason": "user_hangup",
        "started_at": "2026-11-01T12:00:00Z",
        "ended_at": "2026-11-01T12:01:05Z",
        "duration_s": 60.0,
        "recording": "available",
        "cost_total": 0.1,
        "cost_currency": "USD",
        "turn_p95_ms": 1200.0,
        "time_to_first_word_ms": 500.0,
        "assembled_at": "2026-11-01T12:00:00Z",
    }


def test_a_summary_of_a_call_that_knows_little_has_nulls() -> None:
    summary = summary_of(
        agent_id=None,
        end_reason=None,
        ended_at=None,
        duration_s=None,
        cost=None,
        latency=Latency(),
        recording=Recording(status="missing"),
    )

    assert {key: value for key, value in summary.items() if value is None} == {
        "agent_id": None,
        "end_reason": None,
        "ended_at": None,
        "duration_s": None,
        "cost_total": None,
        "cost_currency": None,
        "turn_p95_ms": None,
        "time_to_first_word_ms": None,
    }
    assert summary["recording"] == "missing"


def test_entries_carry_type_org_call_and_the_payload_as_json_text() -> None:
    call = StreamEntry(streams.CALLS_STREAM, "call.assembled", "org_1", "call_1", {"a": [1, "b"]})
    window = StreamEntry(streams.ALERTS_STREAM, "alert.triggered", "org_1", None, {"value": 0.5})

    assert [streams.fields(call), streams.fields(window)] == [
        {
            "type": "call.assembled",
            "org_id": "org_1",
            "call_id": "call_1",
            "payload": '{"a":[1,"b"]}',
        },
        {"type": "alert.triggered", "org_id": "org_1", "call_id": "", "payload": '{"value":0.5}'},
    ]


@pytest.mark.parametrize(
    ("ended_at", "assembled_at", "seconds"),
    [
        ("2026-11-01T12:01:05Z", "2026-11-01T12:01:06.500000Z", 1.5),
        ("2026-11-01T12:01:05Z", "2026-11-01T12:01:04Z", 0.0),  # clocks disagree: not negative
        (None, "2026-11-01T12:01:06Z", None),
        ("2026-11-01T12:01:05Z", None, None),
        ("yesterday", "2026-11-01T12:01:06Z", None),
    ],
)
def test_assembly_seconds_run_from_the_end_of_the_call(
    ended_at: str | None, assembled_at: str | None, seconds: float | None
) -> None:
    payload = {"ended_at": ended_at, "assembled_at": assembled_at}

    assert streams.assembly_seconds(payload) == seconds


def test_a_consumer_group_reads_and_acknowledges_what_was_published(
    client_redis: redis.Redis, settings: Settings
) -> None:
    client_redis.xgroup_create(streams.CALLS_STREAM, "ops", id="$", mkstream=True)
    client_redis.xgroup_create(streams.ALERTS_STREAM, "ops", id="$", mkstream=True)
    summary = summary_of()
    streams.publish(
        client_redis,
        [
            StreamEntry(streams.CALLS_STREAM, "call.assembled", "org_1", "call_1", summary),
            StreamEntry(streams.ALERTS_STREAM, "alert.triggered", "org_1", "call_1", {"v": 2}),
        ],
        maxlen=1000,
    )

    read = client_redis.xreadgroup(
        "ops", "consumer-1", {streams.CALLS_STREAM: ">", streams.ALERTS_STREAM: ">"}, count=10
    )
    got = {stream: [fields for _, fields in entries] for stream, entries in read}
    assert got == {
        streams.CALLS_STREAM: [
            {
                "type": "call.assembled",
                "org_id": "org_1",
                "call_id": "call_1",
                "payload": json.dumps(summary, separators=(",", ":")),
            }
        ],
        streams.ALERTS_STREAM: [
            {
                "type": "alert.triggered",
                "org_id": "org_1",
                "call_id": "call_1",
                "payload": '{"v":2}',
            }
        ],
    }
    for stream, entries in read:
        assert client_redis.xack(stream, "ops", *(entry_id for entry_id, _ in entries)) == 1
    assert client_redis.xpending(streams.CALLS_STREAM, "ops")["pending"] == 0
    assert client_redis.xpending(streams.ALERTS_STREAM, "ops")["pending"] == 0


def test_an_unacknowledged_entry_stays_pending_for_another_consumer_to_claim(
    client_redis: redis.Redis,
) -> None:
    client_redis.xgroup_create(streams.CALLS_STREAM, "ops", id="$", mkstream=True)
    entry = StreamEntry(streams.CALLS_STREAM, "call.assembled", "org_1", "call_1", {})
    streams.publish(client_redis, [entry], maxlen=1000)
    [(_, [(entry_id, _)])] = client_redis.xreadgroup(
        "ops", "crashes", {streams.CALLS_STREAM: ">"}, count=1
    )

    claimed = client_redis.xautoclaim(streams.CALLS_STREAM, "ops", "takes-over", 0, "0-0")

    assert [claimed_id for claimed_id, _ in claimed[1]] == [entry_id]


def test_streams_are_trimmed_to_about_maxlen_keeping_the_newest(
    client_redis: redis.Redis,
) -> None:
    entries = [
        StreamEntry(streams.CALLS_STREAM, "call.assembled", "org_1", f"call_{n}", {"n": n})
        for n in range(500)
    ]
    for start in range(0, 500, 50):
        streams.publish(client_redis, entries[start : start + 50], maxlen=20)

    kept = [fields["call_id"] for _, fields in client_redis.xrange(streams.CALLS_STREAM)]
    # `MAXLEN ~` trims whole nodes of the stream (100 entries by default): at least 20 stay,
    # never the oldest.
    assert 20 <= len(kept) <= 20 + 100
    assert kept == [f"call_{n}" for n in range(500 - len(kept), 500)]


def test_published_entries_are_counted_for_metrics(client_redis: redis.Redis) -> None:
    fast = summary_of("c1")
    fast["ended_at"], fast["assembled_at"] = "2026-11-01T12:00:00Z", "2026-11-01T12:00:00.250Z"
    slow = dict(fast, provider="vapi", assembled_at="2026-11-01T12:05:00Z")
    unknown_end = dict(fast, ended_at=None)
    streams.publish(
        client_redis,
        [
            StreamEntry(streams.CALLS_STREAM, "call.assembled", "org_1", "c1", fast),
            StreamEntry(streams.CALLS_STREAM, "call.assembled", "org_1", "c2", slow),
            StreamEntry(streams.CALLS_STREAM, "call.assembled", "org_1", "c3", unknown_end),
            StreamEntry(streams.ALERTS_STREAM, "alert.triggered", "org_1", None, {}),
            StreamEntry(streams.ALERTS_STREAM, "alert.resolved", "org_1", None, {}),
            StreamEntry(streams.ALERTS_STREAM, "alert.triggered", "org_1", "c2", {}),
        ],
        maxlen=1000,
    )

    assert client_redis.hgetall(COUNTERS) == {
        "calls_assembled|generic": "2",
        "calls_assembled|vapi": "1",
        "assembly_s|0.25": "1",
        "assembly_s|300": "1",
        "assembly_s|sum": "300.25",
        "alerts|alert.triggered": "2",
        "alerts|alert.resolved": "1",
    }


def test_an_unreachable_redis_is_logged_not_raised() -> None:
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=1)
    entry = StreamEntry(streams.CALLS_STREAM, "call.assembled", "org_1", "call_1", {})
    logger, seen = logging.getLogger("callwatch.streams"), BufferingHandler(10)
    logger.addHandler(seen)
    try:
        streams.publish(nowhere, [entry], maxlen=10)
    finally:
        logger.removeHandler(seen)

    assert [(r.levelname, r.getMessage(), r.__dict__["call_id"]) for r in seen.buffer] == [
        ("WARNING", "stream entries not added", "call_1")
    ]


def test_nothing_to_publish_sends_nothing() -> None:
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=1)

    streams.publish(nowhere, [], maxlen=10)  # would log a warning if it tried


def test_a_call_the_worker_assembles_reaches_a_consumer_group(
    client: TestClient, worker: None, client_redis: redis.Redis
) -> None:
    client_redis.xgroup_create(streams.CALLS_STREAM, "ops", id="$", mkstream=True)
    key = create_org(client)
    with DetailServer() as server:
        source = create_source(client, key, settings={"detail_url": server.detail_url})
        call = hand_call("streamed-1")
        server.add(call)
        for body in events_for(call, embed_detail=False):
            raw = json.dumps(body).encode()
            headers = signed(source["webhook_secret"], raw)
            response = client.post(path_of(source["webhook_url"]), content=raw, headers=headers)
            assert response.status_code == 202
        stored = wait_for_call(client, key, "streamed-1", in_state("assembled"))

    read = client_redis.xreadgroup("ops", "c", {streams.CALLS_STREAM: ">"}, count=10, block=5000)

    [(_, [(entry_id, fields)])] = read
    assert fields == {
        "type": "call.assembled",
        "org_id": stored["org_id"],
        "call_id": stored["id"],
        "payload": json.dumps(
            streams.call_summary(CallRecord.model_validate(stored)), separators=(",", ":")
        ),
    }
    assert client_redis.xack(streams.CALLS_STREAM, "ops", entry_id) == 1
