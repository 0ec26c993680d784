"""`callwatch tail calls|alerts` on a real Redis: lines for people, JSON, errors, following live."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest
import redis

from callwatch.cli import tail
from callwatch.cli.embedded import free_port
from callwatch.cli.main import main
from callwatch.downstream import streams
from callwatch.downstream.effects import StreamEntry
from callwatch.settings import Settings
from tests.factories import T0, Tenant, record

OWNER = Tenant(org_id="org_1", key="", source_id="src_1", source="main")
MILLIS = int(T0.timestamp() * 1000)


def call_entry(call_id: str = "call_1", **fields: Any) -> StreamEntry:
    summary = streams.call_summary(record(OWNER, call_id, **fields))
    return StreamEntry(streams.CALLS_STREAM, "call.assembled", "org_1", call_id, summary)


def parsed(entry: StreamEntry, stream_id: str = f"{MILLIS}-0") -> tail.Entry:
    return tail.Entry.parse(stream_id, streams.fields(entry))  # type: ignore[arg-type]


def test_an_assembled_call_is_one_line() -> None:
    assert tail.line(parsed(call_entry())) == (
        "2026-11-01 12:00:00  call.assembled  org_1  call_1  agent sales-bot  completed  "
        "user_hangup  60 s  0.1000 USD  recording available  turn p95 1200 ms"
    )


def test_a_call_that_knows_little_shows_dashes() -> None:
    entry = call_entry(agent_id=None, end_reason=None, duration_s=None, cost=None)
    entry.payload["turn_p95_ms"] = None

    assert tail.line(parsed(entry)) == (
        "2026-11-01 12:00:00  call.assembled  org_1  call_1  agent -  completed  -  -  -  "
        "recording available  turn p95 -"
    )


def test_an_alert_shows_its_rule_condition_value_and_threshold() -> None:
    payload = {
        "id": "alert_1",
        "rule_id": "rule_1",
        "rule_name": "slow turns",
        "kind": "call",
        "state": "open",
        "condition": "latency.turn.p95 > 1500",
        "value": 1800.0,
        "threshold": 1500,
        "window_start": None,
    }
    entry = StreamEntry(streams.ALERTS_STREAM, "alert.triggered", "org_1", "call_1", payload)

    assert tail.line(parsed(entry, f"{MILLIS + 1500}-3")) == (
        "2026-11-01 12:00:01  alert.triggered  org_1  call_1  rule_name slow turns  "
        "condition latency.turn.p95 > 1500  value 1800.0  threshold 1500"
    )


def test_an_entry_of_another_shape_shows_its_plain_fields() -> None:
    payload = {"state": "resolved", "nested": {"a": 1}, "count": 3}
    entry = StreamEntry(streams.ALERTS_STREAM, "alert.resolved", "org_1", None, payload)

    assert tail.line(parsed(entry)) == (
        "2026-11-01 12:00:00  alert.resolved  org_1  -  state resolved  count 3"
    )


def test_json_lines_carry_the_stream_id_and_the_parsed_payload() -> None:
    entry = StreamEntry(streams.ALERTS_STREAM, "alert.resolved", "org_1", None, {"value": 0.2})

    assert json.loads(tail.json_line(parsed(entry))) == {
        "id": f"{MILLIS}-0",
        "type": "alert.resolved",
        "org_id": "org_1",
        "call_id": None,
        "payload": {"value": 0.2},
    }


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@redis.internal:6379/1", "redis://:***@redis.internal:6379/1"),
        ("rediss://ops:s3cret@redis.internal/0", "rediss://ops:***@redis.internal/0"),
    ],
)
def test_messages_never_show_a_redis_password(url: str, shown: str) -> None:
    assert tail.shown_url(url) == shown


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["tail", *argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_from_the_start_it_prints_what_is_there(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    client = redis.Redis.from_url(settings.broker_url)
    entries = [call_entry("c1"), call_entry("c2", status="failed"), call_entry("c3")]
    streams.publish(client, entries, maxlen=100)
    ids = [entry_id.decode() for entry_id, _ in client.xrange(streams.CALLS_STREAM)]

    code, lines, err = run(
        capsys, "calls", "--from-start", "--count", "2", "--redis-url", settings.broker_url
    )

    assert code == 0
    assert (
        lines
        == [
            tail.line(tail.Entry.parse(entry_id, streams.fields(entry)))  # type: ignore[arg-type]
            for entry_id, entry in zip(ids[:2], entries[:2], strict=True)
        ]
    )
    assert err == f"following callwatch:calls on {settings.broker_url}; Ctrl-C to stop\n"


def test_json_from_the_start_with_the_url_from_the_environment(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLWATCH_REDIS_URL", settings.broker_url)
    client = redis.Redis.from_url(settings.broker_url)
    alert = StreamEntry(streams.ALERTS_STREAM, "alert.triggered", "org_1", None, {"value": 3})
    streams.publish(client, [alert], maxlen=100)

    code, lines, _ = run(capsys, "alerts", "--from-start", "--count", "1", "--json")

    [(entry_id, _)] = client.xrange(streams.ALERTS_STREAM)
    assert code == 0
    assert [json.loads(line) for line in lines] == [
        {
            "id": entry_id.decode(),
            "type": "alert.triggered",
            "org_id": "org_1",
            "call_id": None,
            "payload": {"value": 3},
        }
    ]


def test_an_unreachable_redis_is_one_line_saying_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"redis://:pw@127.0.0.1:{free_port()}/0"

    code, lines, err = run(capsys, "calls", "--redis-url", url)

    assert (code, lines) == (2, [])
    assert err.startswith(f"callwatch: cannot reach Redis at redis://:***@127.0.0.1:{url[-7:]}")
    assert err.endswith(
        "; is `callwatch up` (or your deployment's Redis) running? pass --redis-url or set "
        "CALLWATCH_REDIS_URL\n"
    )
    assert err.count("\n") == 1


def test_without_a_redis_url_it_says_where_to_give_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CALLWATCH_REDIS_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env either

    assert run(capsys, "calls") == (
        2,
        [],
        "callwatch: no Redis URL: pass --redis-url or set CALLWATCH_REDIS_URL (the Redis that "
        "callwatch's workers use)\n",
    )


def read_line(stream: IO[str], timeout_s: float = 30) -> str:
    """One line of a child's output, or a failed test rather than a hang."""
    deadline = time.monotonic() + timeout_s
    os.set_blocking(stream.fileno(), False)
    buffered = ""
    while time.monotonic() < deadline:
        chunk = stream.readline()
        buffered += chunk
        if buffered.endswith("\n"):
            return buffered
        time.sleep(0.05)
    raise AssertionError(f"no line within {timeout_s} s (got {buffered!r})")


def test_it_follows_new_entries_live_and_ctrl_c_exits_0(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.broker_url)
    streams.publish(client, [call_entry("before")], maxlen=100)  # not shown: it is not new
    argv = [sys.executable, "-m", "callwatch", "tail", "calls", "--redis-url", settings.broker_url]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stderr is not None
        try:
            assert read_line(child.stderr).startswith("following callwatch:calls on ")
            streams.publish(client, [call_entry("live-1"), call_entry("live-2")], maxlen=100)
            lines = [read_line(child.stdout), read_line(child.stdout)]
            child.send_signal(signal.SIGINT)
            code = child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()

    assert [line.split("  ")[3] for line in lines] == ["live-1", "live-2"]
    assert code == 0
