"""End to end on real parts: webhook → Redis → Celery worker → assembled record via the API."""

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from callwatch.model.events import CallStatus
from callwatch.model.records import CallDetails, LatencySamples, Recording, Utterance
from callwatch.simulator import DetailServer, SimCall, events_for, make_call
from tests.conftest import create_org, create_source, path_of, signed

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def hand_call(call_id: str = "call-hand-1") -> SimCall:
    """A call whose metrics are worked out by hand below."""
    detail = CallDetails(
        agent_id="sales-bot",
        agent_name="Sales bot",
        direction="outbound",
        from_number="+15550001111",
        to_number="+15550002222",
        end_reason="user_hangup",
        end_reason_raw="customer-ended-call",
        duration_s=60.0,
        billed_duration_s=60.0,
        recording=Recording(status="available", url="https://rec.example/1.wav"),
        transcript=[
            Utterance(role="assistant", content="Hi!", start_s=0.5, end_s=2.0),
            Utterance(role="user", content="Hello", start_s=3.0, end_s=4.0),
            Utterance(role="assistant", content="How can I help?", start_s=4.8, end_s=7.0),
            Utterance(role="user", content="wait", start_s=6.5, end_s=8.0),
            Utterance(role="assistant", content="Sure.", start_s=9.2, end_s=10.0),
        ],
        latency_samples=LatencySamples(turn=[800, 1200], llm=[400, 600, 800]),
        cost={"llm": 0.05, "stt": 0.01, "tts": 0.03, "telephony": 0.04, "currency": "USD"},
    )
    return SimCall(
        call_id=call_id,
        agent_id="sales-bot",
        agent_name="Sales bot",
        campaign_id=None,
        direction="outbound",
        from_number="+15550001111",
        to_number="+15550002222",
        status=CallStatus.completed,
        started_at=T0,
        ringing_at=T0 + timedelta(seconds=1),
        answered_at=T0 + timedelta(seconds=5),
        ended_at=T0 + timedelta(seconds=65),
        ring_s=4.0,
        detail=detail,
    )


Env = dict[str, Any]


@pytest.fixture
def env(client: TestClient, worker: None) -> Env:
    key = create_org(client)
    with DetailServer() as server:
        source = create_source(client, key, settings={"detail_url": server.detail_url})
        yield {"client": client, "key": key, "source": source, "server": server}


def send(env: Env, bodies: list[dict[str, Any]], msg_ids: list[str] | None = None) -> None:
    for index, body in enumerate(bodies):
        raw = json.dumps(body).encode()
        msg_id = msg_ids[index] if msg_ids else None
        headers = signed(env["source"]["webhook_secret"], raw, msg_id=msg_id)
        response = env["client"].post(
            path_of(env["source"]["webhook_url"]), content=raw, headers=headers
        )
        assert response.status_code == 202, response.text


def get_call(env: Env, call_id: str) -> Any:
    return env["client"].get(
        f"/api/calls/{call_id}", headers={"authorization": f"Bearer {env['key']}"}
    )


def wait_for(
    env: Env, call_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        response = get_call(env, call_id)
        if response.status_code == 200:
            last = response.json()
            if done(last):
                return last  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"call {call_id} not done in {timeout}s; last: {last}")


def finished(record: dict[str, Any]) -> bool:
    return record["assembly"]["state"] in ("assembled", "failed")


def test_a_call_is_assembled_with_metrics_worked_out_by_hand(env: Env) -> None:
    call = hand_call()
    env["server"].add(call)
    send(env, events_for(call, embed_detail=False))
    record = wait_for(env, call.call_id, finished)
    # Transcript-derived: turn gaps user→assistant are 4.8-4.0=0.8 s and 9.2-8.0=1.2 s, but
    # samples win for turn; ttfw is the first assistant start (0.5 s); "wait" at 6.5 s overlaps
    # the assistant until 7.0 s.
    assert {
        key: record[key]
        for key in (
            "status",
            "end_reason",
            "duration_s",
            "billed_duration_s",
            "ring_duration_s",
            "latency",
            "interruptions",
            "turns",
            "cost",
        )
    } == {
        "status": "completed",
        "end_reason": "user_hangup",
        "duration_s": 60.0,
        "billed_duration_s": 60.0,
        "ring_duration_s": 4.0,
        "latency": {
            "turn": {
                "count": 2,
                "mean": 1000.0,
                "p50": 1000.0,
                "p90": 1160.0,
                "p95": 1180.0,
                "p99": 1196.0,
                "min": 800.0,
                "max": 1200.0,
            },
            "stt": None,
            "tts": None,
            "llm": {
                "count": 3,
                "mean": 600.0,
                "p50": 600.0,
                "p90": 760.0,
                "p95": 780.0,
                "p99": 796.0,
                "min": 400.0,
                "max": 800.0,
            },
            "time_to_first_word_ms": 500.0,
        },
        "interruptions": {"count": 1, "items": [{"at_s": 6.5, "duration_s": 0.5, "text": "wait"}]},
        "turns": {"count": 5, "user_talk_s": 2.5, "agent_talk_s": 4.5},
        "cost": {
            "total": 0.13,
            "currency": "USD",
            "llm": 0.05,
            "stt": 0.01,
            "tts": 0.03,
            "telephony": 0.04,
            "platform": None,
            "per_minute": 0.13,
        },
    }
    assert record["recording"]["status"] == "available"
    assert record["assembly"]["state"] == "assembled"
    assert [entry["status"] for entry in record["timeline"]] == [
        "initiated",
        "ringing",
        "in_progress",
        "completed",
    ]
    assert record["answered_at"] == "2026-11-20T10:00:05Z"


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    volatile = {"id", "updated_at", "assembly"}
    out = {key: value for key, value in record.items() if key not in volatile}
    out["recording"] = {k: v for k, v in record["recording"].items() if k != "available_at"}
    if out["recording"]["archive"]:  # when the copy was made is the worker's clock
        out["recording"]["archive"] = {
            k: v for k, v in out["recording"]["archive"].items() if k != "archived_at"
        }
    return out


def test_shuffled_and_repeated_events_give_the_same_record(env: Env) -> None:
    first, second = hand_call("ordered-1"), hand_call("shuffled-1")
    for call in (first, second):
        env["server"].add(call)
    send(env, events_for(first, embed_detail=False))
    deliveries = [
        (f"msg_{n}", body) for n, body in enumerate(events_for(second, embed_detail=False))
    ]
    deliveries *= 2  # a platform redelivers with the same webhook-id
    random.Random(7).shuffle(deliveries)
    send(env, [body for _, body in deliveries], [msg_id for msg_id, _ in deliveries])
    # Assembly may finish before the last shuffled events are applied; they then rebuild it.
    events = len(events_for(first, embed_detail=False))

    def settled(record: dict[str, Any]) -> bool:
        return finished(record) and len(record["timeline"]) == events

    ordered = wait_for(env, first.call_id, settled)
    shuffled = wait_for(env, second.call_id, settled)
    as_second = json.loads(json.dumps(comparable(ordered)).replace(first.call_id, second.call_id))
    assert comparable(shuffled) == as_second


def test_a_late_ringing_is_in_the_timeline_but_status_stays(env: Env) -> None:
    call = hand_call("late-1")
    env["server"].add(call)
    bodies = events_for(call, embed_detail=False)
    send(env, [bodies[-1]])
    wait_for(env, call.call_id, finished)
    late = dict(bodies[1], timestamp=(T0 + timedelta(seconds=70)).isoformat())
    send(env, [late])
    record = wait_for(env, call.call_id, lambda r: len(r["timeline"]) == 2)
    assert record["status"] == "completed"
    assert [entry["status"] for entry in record["timeline"]] == ["completed", "ringing"]


def test_detail_api_500_then_200_is_assembled(env: Env) -> None:
    call = hand_call("flaky-1")
    env["server"].add(call, fail_first=1, throttle_first=1, retry_after_s=0.2)
    send(env, events_for(call, embed_detail=False))
    record = wait_for(env, call.call_id, finished)
    assert (record["assembly"]["state"], record["assembly"]["last_error"]) == ("assembled", None)
    assert env["server"].requests(call.call_id) == 3


def test_detail_api_always_500_ends_failed_with_the_last_error(env: Env) -> None:
    call = hand_call("down-1")
    env["server"].add(call, always_fail=True)
    send(env, events_for(call, embed_detail=False))
    record = wait_for(env, call.call_id, finished)
    detail_url = env["server"].detail_url.replace("{call_id}", call.call_id)
    assert record["assembly"] == {
        "state": "failed",
        "attempts": 3,
        "assembled_at": None,
        "last_error": f"GET {detail_url}: HTTP 500",
    }
    assert env["server"].requests(call.call_id) == 3


def test_recording_appearing_while_awaited_is_available(env: Env, settings: Any) -> None:
    call = hand_call("slow-rec-1")
    # After the first fetch, within the test settings' 2 s wait (600 s by default).
    env["server"].add(call, recording_after_s=1.0)
    send(env, events_for(call, embed_detail=False))
    pending = wait_for(env, call.call_id, lambda r: r["assembly"]["state"] == "awaiting_recording")
    assert pending["recording"]["status"] == "pending"
    record = wait_for(env, call.call_id, finished)
    assert record["recording"]["status"] == "available"
    assert record["recording"]["url"].endswith(f"/recordings/{call.call_id}.wav")


def test_recording_that_never_appears_is_missing_after_the_wait(env: Env) -> None:
    call = hand_call("no-rec-1")
    env["server"].add(call, recording_after_s=None)
    send(env, events_for(call, embed_detail=False))
    record = wait_for(env, call.call_id, finished)
    assert (record["assembly"]["state"], record["recording"]) == (
        "assembled",
        {"status": "missing", "url": None, "dual_url": None, "available_at": None, "archive": None},
    )


def test_unanswered_call_has_no_recording_to_wait_for(env: Env) -> None:
    rng = random.Random(3)
    call = next(
        c for c in iter(lambda: make_call(rng, T0), None) if c.status == CallStatus.no_answer
    )
    env["server"].add(call)
    send(env, events_for(call, embed_detail=False))
    record = wait_for(env, call.call_id, finished, timeout=5)
    assert (record["status"], record["recording"]["status"], record["duration_s"]) == (
        "no_answer",
        "none",
        0.0,
    )
