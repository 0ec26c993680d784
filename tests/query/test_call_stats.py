"""Records in the shape of reference 000's call_stats: pure mapping, then the route."""

from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from callwatch.query.call_stats import agent_call, hangup_source, status_of
from callwatch.runtime import Runtime
from tests.factories import T0, Tenant, add_call, record, tenant

OWNER = Tenant(org_id="org_1", key="", source_id="src_1", source="main")


def test_a_record_maps_field_by_field() -> None:
    source = record(OWNER, "c1", metadata={"lead": 7})

    mapped = agent_call(source).model_dump(mode="json")

    assert mapped == {
        "call_id": "c1",
        "provider_call_id": "p-c1",
        "call_agent_id": "sales-bot",
        "stt_data": [],
        "llm_data": [
            {
                "count": 2,
                "mean": 400.0,
                "p50": 400.0,
                "p90": None,
                "p95": 500.0,
                "p99": None,
                "min": None,
                "max": None,
            }
        ],
        "tts_data": [],
        "call_transcription": [
            {"role": "assistant", "content": "Hi!", "start_s": 0.5, "end_s": 1.0}
        ],
        "call_recording_url": "https://rec.example/1.wav",
        "from_number": "+15550001111",
        "to_number": "+15550002222",
        "recording_id": None,
        "call_context": {"lead": 7},
        "call_status": "ANSWERED",
        "call_duration": 60.0,
        "billed_duration": 60.0,
        "initiation_time": "2026-11-01T12:00:00Z",
        "answer_time": "2026-11-01T12:00:05Z",
        "end_time": "2026-11-01T12:01:05Z",
        "hangup_cause_name": "user_hangup",
        "hangup_source": "Callee",
        "call_direction": "outbound",
        "task_id": None,
        "call_state_changes": [
            {"status": "completed", "at": "2026-11-01T12:00:00Z", "event": "call.completed"}
        ],
        "call_triggered": True,
        "call_quality": {},
        "call_insights": {"summary": "ok", "success": True, "sentiment": None, "data": {}},
        "call_timeline": [
            {"status": "completed", "at": "2026-11-01T12:00:00Z", "event": "call.completed"}
        ],
        "tool_data": [],
        "audio_config": {},
        "org_id": "org_1",
    }


@pytest.mark.parametrize(
    ("status", "answered", "expected"),
    [
        ("completed", True, "ANSWERED"),
        ("no_answer", False, "FAILED"),
        ("busy", False, "FAILED"),
        ("ringing", False, "INITIATED"),
        ("queued", False, "QUEUED"),
    ],
)
def test_status_in_origins_terms(status: str, answered: bool, expected: str) -> None:
    source = record(OWNER, "c1", status=status, answered_at=T0 if answered else None)

    assert status_of(source) == expected


@pytest.mark.parametrize(
    ("direction", "end_reason", "expected"),
    [
        ("inbound", "user_hangup", "Caller"),
        ("inbound", "agent_hangup", "Callee"),
        ("outbound", "agent_hangup", "Caller"),
        ("outbound", "error", "Error"),
        ("outbound", "voicemail", "Unknown"),
    ],
)
def test_hangup_source_in_plivo_terms(direction: str, end_reason: str, expected: str) -> None:
    source = record(OWNER, "c1", direction=direction, end_reason=end_reason)

    assert hangup_source(source) == expected


def test_the_route_lists_only_that_agents_calls_newest_first(
    client: TestClient, runtime: Runtime
) -> None:
    acme = tenant(client, "acme")
    for n, agent in enumerate(["a", "b", "a"]):
        add_call(runtime, acme, f"c{n}", agent_id=agent, started_at=T0 + timedelta(minutes=n))

    listed = client.get("/api/agents/a/call_stats", headers=acme.headers).json()

    assert [call["call_id"] for call in listed] == ["c2", "c0"]
    assert client.get("/api/agents/nobody/call_stats", headers=acme.headers).json() == []
