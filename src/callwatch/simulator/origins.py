"""Origins AI / Dialflo's side of a simulated call: its unsigned completion and `call_details`."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from callwatch.model.events import CallStatus
from callwatch.model.records import Recording
from callwatch.simulator.base import Platform
from callwatch.simulator.calls import SimCall

IST = timezone(timedelta(hours=5, minutes=30))
ORG_ID = 311
CALL_STATUS = {
    CallStatus.completed: "ANSWERED",
    CallStatus.no_answer: "FAILED",
    CallStatus.busy: "FAILED",
    CallStatus.failed: "FAILED",
    CallStatus.canceled: "FAILED",
}
# Plivo's hangup cause and source for each way a call ends.
HANGUP_CAUSE = {
    CallStatus.completed: "Normal Hangup",
    CallStatus.no_answer: "No Answer",
    CallStatus.busy: "Busy Line",
    CallStatus.failed: "Destination Out Of Service",
    CallStatus.canceled: "Canceled",
}
UNANSWERED_SOURCE = {
    CallStatus.no_answer: "Carrier",
    CallStatus.busy: "Call recipient",
    CallStatus.failed: "Carrier",
    CallStatus.canceled: "API Request",
}
SATISFACTION = {"positive": 9, "neutral": 6, "negative": 3}


def call_id(call: SimCall) -> str:
    """Origins' call id is a uuid, as the simulator's own is."""
    return call.call_id


def task_id(call: SimCall) -> str:
    """The call's task (one call per task here): the key of Dialflo's `call_details`."""
    return str(_number(call.call_id, 7))


def agent_id(call: SimCall) -> int:
    """Origins' agent ids are integers (its task and org ids too); numbers stay E.164."""
    return _number(call.agent_id, 3)


def timed_webhooks(
    call: SimCall, embed_detail: bool = False
) -> list[tuple[datetime, dict[str, Any]]]:
    """The one completion POST, when the call ends: Dialflo's documented webhook fields.

    It always carries the call's summary fields; `embed_detail` changes nothing (the transcript
    and per-stage data are only in the API)."""
    detail = call.detail
    recording = detail.recording.url if detail.recording else None
    body = {
        "call_id": call_id(call),
        "agent_id": agent_id(call),
        "agent_name": call.agent_name,
        "task_id": int(task_id(call)),
        "call_recording_url": recording,
        "from_number": call.from_number,
        "to_number": call.to_number,
        "call_duration": detail.duration_s or 0.0,
        "call_direction": call.direction,
        "call_triggered": call.direction == "outbound",
        **_ending(call),
        **_insights(call),
    }
    return [(call.ended_at, body)]


def call_details(call: SimCall, recording: Recording) -> list[dict[str, Any]]:
    """`GET /call_details/{task_id}`: the task's calls (this one) as full call objects."""
    detail = call.detail
    samples = detail.latency_samples
    return [
        {
            "call_id": call_id(call),
            "call_agent_id": agent_id(call),
            "agent_name": call.agent_name,
            "stt_data": _stage(samples.stt if samples else []),
            "llm_data": _stage(samples.llm if samples else []),
            "tts_data": _stage(samples.tts if samples else []),
            "call_transcription": _transcription(call),
            "call_recording_url": recording.url,
            "from_number": call.from_number,
            "to_number": call.to_number,
            "recording_id": _recording_id(call),
            "call_context": {"campaign_id": call.campaign_id} if call.campaign_id else {},
            "call_duration": detail.duration_s or 0.0,
            "billed_duration": detail.billed_duration_s or 0.0,
            "call_direction": call.direction,
            "task_id": int(task_id(call)),
            "call_state_changes": _state_changes(call),
            "call_triggered": call.direction == "outbound",
            "call_timeline": None,
            "tool_data": [],
            "audio_config": {"sample_rate": 8000, "encoding": "mulaw"},
            "org_id": ORG_ID,
            **_ending(call),
            **_insights(call),
        }
    ]


def plivo_time(moment: datetime | None) -> str | None:
    """`2025-06-25 10:57:05+05:30`: Plivo's local time in India with its offset, whole seconds."""
    if moment is None:
        return None
    return moment.astimezone(IST).isoformat(sep=" ", timespec="seconds")


def _ending(call: SimCall) -> dict[str, Any]:
    return {
        "call_status": CALL_STATUS[call.status],
        "initiation_time": plivo_time(call.started_at),
        "answer_time": plivo_time(call.answered_at),
        "end_time": plivo_time(call.ended_at),
        "hangup_cause_name": HANGUP_CAUSE[call.status],
        "hangup_source": _hangup_source(call),
    }


def _hangup_source(call: SimCall) -> str:
    if call.status in UNANSWERED_SOURCE:
        return UNANSWERED_SOURCE[call.status]
    if call.detail.end_reason == "user_hangup":
        return "Callee" if call.direction == "outbound" else "Caller"
    return "API Request"  # the agent ended or transferred the call through Plivo's API


def _insights(call: SimCall) -> dict[str, Any]:
    analysis = call.detail.analysis
    if call.answered_at is None or analysis is None:
        return {}
    quality = (
        {"user_satisfaction": {"value": SATISFACTION[analysis.sentiment]}}
        if analysis.sentiment in SATISFACTION
        else {}
    )
    return {
        "call_insights": {
            "summary": analysis.summary,
            "next_action": "NONE" if analysis.success else "REDIAL",
        },
        "call_quality": quality,
    }


def _stage(samples: list[float]) -> list[dict[str, Any]]:
    return [{"turn": turn, "latency_ms": ms} for turn, ms in enumerate(samples, start=1)]


def _transcription(call: SimCall) -> list[dict[str, Any]]:
    return [
        {
            "role": "agent" if turn.role == "assistant" else "user",
            "content": turn.content,
            "start_time": turn.start_s,
            "end_time": turn.end_s,
        }
        for turn in call.detail.transcript or []
        if turn.role in ("assistant", "user")
    ]


def _state_changes(call: SimCall) -> list[dict[str, Any]]:
    steps = [("INITIATED", call.started_at), ("RINGING", call.ringing_at)]
    if call.answered_at is not None:
        steps.append(("ANSWERED", call.answered_at))
    steps.append(("HANGUP", call.ended_at))
    return [{"state": state, "time": plivo_time(at)} for state, at in steps]


def _recording_id(call: SimCall) -> str | None:
    if call.detail.recording is None:
        return None
    return str(uuid.uuid5(uuid.NAMESPACE_URL, call.call_id))


def _number(text: str, digits: int) -> int:
    """A stable positive integer of `digits` digits derived from `text`."""
    value = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    low: int = 10 ** (digits - 1)
    return low + value % (9 * low)


PLATFORM = Platform(
    webhooks=timed_webhooks,
    secret_name=None,
    call_id=task_id,  # Dialflo's call_details is keyed by the task
    api={"/call_details/{call_id}": call_details},
)
