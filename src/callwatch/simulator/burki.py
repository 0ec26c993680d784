"""Burki's side of a simulated call: its unsigned webhooks and its calls-by-SID API."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from callwatch.model.records import Recording
from callwatch.simulator.base import Platform
from callwatch.simulator.calls import SimCall

# Burki's end-of-call report speaks Vapi's language for why a call ended.
ENDED_REASON = {
    "user_hangup": "customer-ended-call",
    "agent_hangup": "assistant-ended-call",
    "transferred": "assistant-forwarded-call",
}
ROLES = {"assistant": "bot", "user": "human"}


def call_id(call: SimCall) -> str:
    """Burki keys calls by the Twilio Call SID: CA and 32 hex digits."""
    return "CA" + _hex32(call.call_id)


def our_number(call: SimCall) -> str:
    return call.to_number if call.direction == "inbound" else call.from_number


def customer_number(call: SimCall) -> str:
    return call.from_number if call.direction == "inbound" else call.to_number


def flat(call: SimCall) -> bool:
    """Half the calls are posted in the flat shape of Burki's webhook-log docs, half in the
    Vapi-like shape of its code (providers.md: both are to be expected)."""
    return int(_hex32("shape" + call.call_id), 16) % 2 == 0


def timed_webhooks(call: SimCall, embed_detail: bool) -> list[tuple[datetime, dict[str, Any]]]:
    """A status update when the assistant picks up, the report at hangup (no call id in it,
    as Burki's code sends it); or, flat, `call_started` and `call_ended` naming the SID and
    nothing else. Calls that never connect reach no assistant and send nothing."""
    if call.answered_at is None:
        return []
    sid = call_id(call)
    if flat(call):
        return [
            (moment, {"event": event, "call_sid": sid, "timestamp": _iso(moment)})
            for event, moment in (("call_started", call.answered_at), ("call_ended", call.ended_at))
        ]
    update = {
        "type": "status-update",
        "status": "in-progress",
        "phoneNumber": {"number": our_number(call)},
        "call": {
            "id": sid,
            "phoneCallProviderId": sid,
            "customer": {"number": customer_number(call)},
        },
        "messages": [],
    }
    detail = call.detail
    analysis = detail.analysis
    report = {
        "type": "end-of-call-report",
        "phoneNumber": {"number": our_number(call)},
        "customer": {"number": customer_number(call)},
        "summary": analysis.summary if analysis else None,
        "recordingUrl": None,  # Burki sends the report before Twilio has the recording
        "endedReason": ENDED_REASON.get(detail.end_reason or "", "customer-ended-call"),
        "durationSeconds": detail.duration_s,
        "messages": [
            {"role": ROLES[turn.role], "content": turn.content}
            for turn in detail.transcript or []
            if turn.role in ROLES
        ],
        "analysis": {
            "summary": analysis.summary if analysis else None,
            "durationSeconds": detail.duration_s,
            "structuredData": dict(analysis.data) if analysis else {},
        },
    }
    return [(call.answered_at, {"message": update}), (call.ended_at, {"message": report})]


def call_json(call: SimCall, recording: Recording) -> dict[str, Any]:
    """`GET /api/v1/calls/sid/{sid}`."""
    detail = call.detail
    cost = detail.cost
    return {
        "id": int(_hex32(call.call_id), 16) % 10**6,
        "call_sid": call_id(call),
        "assistant_id": call.agent_id,
        "assistant_name": call.agent_name,
        "to_phone_number": our_number(call),
        "customer_phone_number": customer_number(call),
        "status": "completed",
        "duration": round(detail.duration_s or 0),
        "started_at": _iso(call.answered_at or call.started_at),
        "ended_at": _iso(call.ended_at),
        "call_meta": {"campaign": call.campaign_id} if call.campaign_id else {},
        "total_cost": cost.total if cost else None,
        "llm_cost": cost.llm if cost else None,
        "tts_cost": cost.tts if cost else None,
        "stt_cost": cost.stt if cost else None,
        "telephony_cost": cost.telephony if cost else None,
        "cost_currency": cost.currency if cost else None,
    }


def recordings(call: SimCall, recording: Recording) -> list[dict[str, Any]]:
    """`GET /api/v1/calls/sid/{sid}/recordings`: `processing` until Twilio has the file."""
    ready = recording.url is not None
    return [
        {
            "recording_sid": "RE" + _hex32("recording" + call.call_id),
            "recording_url": recording.url,
            "duration": round(call.detail.duration_s or 0),
            "format": "wav",
            "recording_type": "mixed",
            "recording_source": "twilio",
            "status": "completed" if ready else "processing",
        }
    ]


def transcripts(call: SimCall, recording: Recording) -> list[dict[str, Any]]:
    """`GET /api/v1/calls/sid/{sid}/transcripts`: the final segments, by creation time."""
    number = int(_hex32(call.call_id), 16) % 10**6
    answered = call.answered_at or call.started_at
    return [
        {
            "id": number * 1000 + index,
            "call_id": number,
            "content": turn.content,
            "is_final": True,
            "speaker": turn.role,
            "segment_start": turn.start_s,
            "segment_end": turn.end_s,
            "confidence": 0.94,
            "created_at": _iso(answered + timedelta(seconds=turn.end_s or 0)),
        }
        for index, turn in enumerate(call.detail.transcript or [])
        if turn.role in ROLES
    ]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _hex32(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


PLATFORM = Platform(
    webhooks=timed_webhooks,
    secret_name=None,
    call_id=call_id,
    api={
        "/api/v1/calls/sid/{call_id}": call_json,
        "/api/v1/calls/sid/{call_id}/recordings": recordings,
        "/api/v1/calls/sid/{call_id}/transcripts": transcripts,
    },
)
