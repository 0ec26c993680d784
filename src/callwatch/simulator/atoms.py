"""Smallest.ai Atoms' side of a simulated call: its three webhooks, signed as Atoms signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from callwatch.events import CallStatus
from callwatch.simulator.calls import SimCall

AGENT_ID = "66aa01b2c3d4e5f60123abcd"
ANALYSIS_AFTER = timedelta(seconds=20)
# Atoms' webhook vocabulary for how a call ended (hyphens, American "canceled").
CALL_STATUS = {
    CallStatus.completed: "completed",
    CallStatus.no_answer: "no-answer",
    CallStatus.busy: "busy",
    CallStatus.failed: "failed",
    CallStatus.canceled: "canceled",
}


def call_id(call: SimCall) -> str:
    """Atoms' id format: CALL-<13-digit ms>-<6 hex>."""
    millis = int(call.started_at.timestamp() * 1000)
    return f"CALL-{millis:013d}-{uuid.UUID(call.call_id).hex[:6]}"


def timed_webhooks(call: SimCall) -> list[tuple[datetime, dict[str, Any]]]:
    """(when Atoms sends it, body) for each webhook of the call, in sending order."""
    conversation = "telephonyInbound" if call.direction == "inbound" else "telephonyOutbound"
    sent: list[tuple[datetime, dict[str, Any]]] = []

    def webhook(kind: str, at: datetime, **extra: Any) -> None:
        metadata = {
            "agentId": AGENT_ID,
            "eventType": kind,
            "conversationType": conversation,
            "callId": call_id(call),
            **extra,
        }
        body = {
            "url": "https://hooks.callwatch-sim.invalid/atoms",
            "description": "simulated",
            "event": f"{AGENT_ID}.{kind}",
            "id": uuid.uuid4().hex[:24],
            "metadata": metadata,
        }
        sent.append((at, body))

    if call.answered_at is not None:
        webhook(
            "pre-conversation", call.answered_at, fromPhone=call.from_number, toPhone=call.to_number
        )
    call_data = _call_data(call)
    recording = call.detail.recording.url if call.detail.recording else None
    webhook(
        "post-conversation",
        call.ended_at,
        recordingUrl=recording or "",
        callData=call_data,
        transcript=_transcript(call),
        variables={"campaign": call.campaign_id} if call.campaign_id else {},
    )
    analysis = call.detail.analysis
    if call.answered_at is not None and analysis is not None:
        webhook(
            "analytics-completed",
            call.ended_at + ANALYSIS_AFTER,
            analytics={
                "summary": analysis.summary,
                "dispositionMetrics": [{"name": "success", "value": analysis.success}],
                "successMetrics": [],
            },
            callData=call_data,
        )
    return sent


def signed_request(secret: str, body: dict[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
    """JSON bytes with Atoms' `X-Signature`: hex HMAC-SHA256 of the raw body (no timestamp)."""
    content = json.dumps(body, separators=(",", ":")).encode()
    digest = hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()
    return content, {"content-type": "application/json", "x-signature": digest}


def _call_data(call: SimCall) -> dict[str, Any]:
    return {
        "callStatus": CALL_STATUS.get(call.status, call.status.value),
        "callDuration": call.detail.duration_s or 0.0,
        "fromNumber": call.from_number,
        "toNumber": call.to_number,
        "answerTime": _iso(call.answered_at) if call.answered_at else None,
        "endTime": _iso(call.ended_at),
        "callDirection": f"telephony_{call.direction}",
    }


def _transcript(call: SimCall) -> list[dict[str, Any]]:
    if call.answered_at is None:
        return []
    answered = call.answered_at
    return [
        {
            "role": "agent" if turn.role == "assistant" else "user",
            "content": turn.content,
            "timestamp": _iso(answered + timedelta(seconds=turn.start_s or 0)),
        }
        for turn in call.detail.transcript or []
        if turn.role in ("assistant", "user")
    ]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
