"""Bolna's side of a simulated call: the execution re-posted on each status, and its API."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from callwatch.model.events import CallStatus
from callwatch.model.records import Recording
from callwatch.simulator.base import Platform
from callwatch.simulator.calls import SimCall

# Bolna finishes post-processing (recording, extraction) minutes after the line drops.
COMPLETED_AFTER = timedelta(minutes=2, seconds=30)
QUEUED_BEFORE = timedelta(seconds=2)
UNANSWERED_STATUS = {
    CallStatus.no_answer: "no-answer",
    CallStatus.busy: "busy",
    CallStatus.failed: "failed",
    CallStatus.canceled: "canceled",
}
HANGUP = {
    CallStatus.no_answer: ("Unknown", "No Answer", "3000"),
    CallStatus.busy: ("Callee", "Busy Line", "3010"),
    CallStatus.failed: ("Error", "Service Unavailable", "8011"),
    CallStatus.canceled: ("API Request", "Cancelled", "4020"),
}
CUSTOMER = {"outbound": "Callee", "inbound": "Caller"}
AGENT = {"outbound": "API Request", "inbound": "API Request"}


def execution_id(call: SimCall) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(("bolna" + call.call_id).encode()).digest()[:16]))


def agent_id(call: SimCall) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(call.agent_id.encode()).digest()[:16]))


def timed_webhooks(call: SimCall, embed_detail: bool) -> list[tuple[datetime, dict[str, Any]]]:
    """(when Bolna sends it, the execution) for each status of the call, in sending order.

    Every webhook is the whole execution: `embed_detail` changes nothing."""
    steps = [
        (call.started_at - QUEUED_BEFORE, "queued"),
        (call.started_at, "initiated"),
        (call.ringing_at, "ringing"),
    ]
    if call.answered_at is not None:
        steps += [
            (call.answered_at, "in-progress"),
            (call.ended_at, "call-disconnected"),
            (call.ended_at + COMPLETED_AFTER, "completed"),
        ]
    else:
        steps.append((call.ended_at, UNANSWERED_STATUS[call.status]))
    recording = call.detail.recording or Recording(status="none")
    return [(at, _execution(call, status, at, recording)) for at, status in steps]


def execution(call: SimCall, recording: Recording) -> dict[str, Any]:
    """`GET /executions/{id}`: `call-disconnected` until the recording is ready, then
    `completed` with it (the server's recording delay plays Bolna's post-processing)."""
    if call.answered_at is None:
        status = UNANSWERED_STATUS[call.status]
        return _execution(call, status, call.ended_at, recording)
    if recording.url is None:
        return _execution(call, "call-disconnected", call.ended_at, recording)
    return _execution(call, "completed", call.ended_at + COMPLETED_AFTER, recording)


def _execution(call: SimCall, status: str, at: datetime, recording: Recording) -> dict[str, Any]:
    detail = call.detail
    final = status not in ("queued", "initiated", "ringing", "in-progress", "call-disconnected")
    completed = status == "completed"
    cost = detail.cost if final else None
    return {
        "id": execution_id(call),
        "agent_id": agent_id(call),
        "batch_id": _batch(call.campaign_id),
        "status": status,
        "error_message": "SIP 503 Service Unavailable" if status == "failed" else None,
        "conversation_duration": (detail.duration_s or 0.0) if final else 0,
        "total_cost": round((cost.total or 0) * 100, 4) if cost else 0,
        "cost_breakdown": _breakdown(call) if final else {},
        "transcript": _transcript(call) if completed else "",
        "extracted_data": dict(detail.analysis.data) if completed and detail.analysis else None,
        "summary": detail.analysis.summary if completed and detail.analysis else None,
        "answered_by_voice_mail": False,
        "created_at": _iso(call.started_at - QUEUED_BEFORE),
        "updated_at": _iso(at),
        "telephony_data": _telephony(call, status, recording if completed else None),
        "transfer_call_data": None,
        "latency_data": _latency(call) if completed else None,
        "context_details": {},
    }


def _batch(campaign_id: str | None) -> str | None:
    return hashlib.sha256(campaign_id.encode()).hexdigest()[:32] if campaign_id else None


def _breakdown(call: SimCall) -> dict[str, float]:
    cost = call.detail.cost
    if cost is None:
        return {}
    parts = {
        "llm": cost.llm,
        "network": cost.telephony,
        "platform": cost.platform,
        "synthesizer": cost.tts,
        "transcriber": cost.stt,
    }
    return {name: round(value * 100, 4) for name, value in parts.items() if value is not None}


def _telephony(call: SimCall, status: str, recording: Recording | None) -> dict[str, Any]:
    if call.answered_at is not None:
        hangup_by = (CUSTOMER if call.detail.end_reason == "user_hangup" else AGENT)[call.direction]
        reason, code = "Normal Hangup", "4000"
    else:
        hangup_by, reason, code = HANGUP[call.status]
    ended = status in ("call-disconnected", "completed") or call.answered_at is None
    return {
        "duration": round((call.ended_at - call.started_at).total_seconds()) if ended else None,
        "to_number": call.to_number,
        "from_number": call.from_number,
        "recording_url": recording.url if recording else None,
        "hosted_telephony": True,
        "provider_call_id": "CA" + hashlib.sha256(call.call_id.encode()).hexdigest()[:32],
        "call_type": call.direction,
        "provider": "twilio",
        "hangup_by": hangup_by if ended else None,
        "hangup_reason": reason if ended else None,
        "hangup_provider_code": code if ended else None,
    }


def _transcript(call: SimCall) -> str:
    return "\n".join(
        f"{turn.role}: {turn.content}"
        for turn in call.detail.transcript or []
        if turn.role in ("assistant", "user")
    )


def _latency(call: SimCall) -> dict[str, Any] | None:
    """Bolna's per-turn latency blocks; the LLM and synthesizer key names are our guess."""
    samples = call.detail.latency_samples
    first = next((t for t in call.detail.transcript or [] if t.role == "assistant"), None)
    if samples is None or first is None:
        return None

    def turns(values: list[float], key: str) -> list[dict[str, Any]]:
        return [
            {"turn": index + 1, "turn_latency": [{"sequence_id": 1, key: value}]}
            for index, value in enumerate(values)
        ]

    return {
        "time_to_first_audio": round((first.start_s or 0) * 1000, 2),
        "region": "us",
        "transcriber": {
            "time_to_connect": 226,
            "turns": turns(samples.stt, "audio_to_text_latency"),
        },
        "llm": {"time_to_connect": None, "turns": turns(samples.llm, "time_to_first_token")},
        "synthesizer": {
            "time_to_connect": 271,
            "turns": turns(samples.tts, "time_to_first_byte"),
        },
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


PLATFORM = Platform(
    webhooks=timed_webhooks,
    secret_name=None,
    call_id=execution_id,
    api={"/executions/{call_id}": execution},
)
