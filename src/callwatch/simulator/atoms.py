"""Smallest.ai Atoms' side of a simulated call: its webhooks, signed, and `GET /conversation`."""

from __future__ import annotations

import hashlib
import hmac
import json
import statistics
import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from callwatch.model.events import CallStatus
from callwatch.model.records import Recording
from callwatch.simulator.base import Platform
from callwatch.simulator.calls import SimCall

ANALYSIS_AFTER = timedelta(seconds=20)
CREDITS_PER_USD = 100  # the simulator's exchange rate; Atoms bills in credits
# Atoms' webhook vocabulary for how a call ended (hyphens, American "canceled").
CALL_STATUS = {
    CallStatus.completed: "completed",
    CallStatus.no_answer: "no-answer",
    CallStatus.busy: "busy",
    CallStatus.failed: "failed",
    CallStatus.canceled: "canceled",
}
# Its REST vocabulary (underscores, British "cancelled"); the enum has no `busy`: that call failed.
API_STATUS = {
    CallStatus.completed: "completed",
    CallStatus.no_answer: "no_answer",
    CallStatus.busy: "failed",
    CallStatus.failed: "failed",
    CallStatus.canceled: "cancelled",
}
DISCONNECTION_REASON = {
    "user_hangup": "user_hangup",
    "agent_hangup": "agent_hangup",
    "no_answer": "dial_no_answer",
}


def call_id(call: SimCall) -> str:
    """Atoms' id format: CALL-<13-digit ms>-<6 hex>."""
    millis = int(call.started_at.timestamp() * 1000)
    return f"CALL-{millis:013d}-{hashlib.sha256(call.call_id.encode()).hexdigest()[:6]}"


def agent_id(call: SimCall) -> str:
    """Atoms' id format for the call's agent: 24 hex digits."""
    return hashlib.sha256(call.agent_id.encode()).hexdigest()[:24]


def timed_webhooks(call: SimCall, embed_detail: bool) -> list[tuple[datetime, dict[str, Any]]]:
    """(when Atoms sends it, body) for each webhook of the call, in sending order.

    Atoms' post-conversation webhook always carries the call: `embed_detail` changes nothing."""
    conversation_type = "telephonyInbound" if call.direction == "inbound" else "telephonyOutbound"
    sent: list[tuple[datetime, dict[str, Any]]] = []

    def webhook(kind: str, at: datetime, **extra: Any) -> None:
        metadata = {
            "agentId": agent_id(call),
            "eventType": kind,
            "conversationType": conversation_type,
            "callId": call_id(call),
            **extra,
        }
        body = {
            "url": "https://hooks.callwatch-sim.invalid/atoms",
            "description": "simulated",
            "event": f"{agent_id(call)}.{kind}",
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
    analytics = _post_call_analytics(call)
    if analytics:
        webhook(
            "analytics-completed",
            call.ended_at + ANALYSIS_AFTER,
            analytics={**analytics, "successMetrics": []},
            callData=call_data,
        )
    return sent


def conversation(call: SimCall, recording: Recording) -> dict[str, Any]:
    """`GET /conversation/{callId}`: the call as Atoms' REST API describes it."""
    detail = call.detail
    cost = (detail.cost.total if detail.cost else None) or 0.0
    data = {
        "callId": call_id(call),
        "agentId": agent_id(call),
        "status": API_STATUS[call.status],
        "type": f"telephony_{call.direction}",
        "from": call.from_number,
        "to": call.to_number,
        "duration": detail.duration_s or 0.0,
        "disconnectionReason": DISCONNECTION_REASON.get(detail.end_reason or ""),
        "callFailureReason": _failure_reason(call),
        "recordingUrl": recording.url or "",
        "recordingDualUrl": recording.dual_url or "",
        "transcript": [
            {
                "role": "agent" if turn.role == "assistant" else "user",
                "content": turn.content,
                "timestamp": round((turn.start_s or 0) * 1000),
            }
            for turn in detail.transcript or []
            if turn.role in ("assistant", "user")
        ],
        "events": [],
        "turnLatencyMetrics": _turn_latency_metrics(call),
        "callCost": round(cost * CREDITS_PER_USD, 2),
        "postCallAnalytics": _post_call_analytics(call) or None,
    }
    return {"status": True, "data": data}


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


def _failure_reason(call: SimCall) -> str | None:
    if call.status is CallStatus.busy:
        return "busy"
    errors = call.detail.errors or []
    return errors[0].description if errors else None


def _turn_latency_metrics(call: SimCall) -> dict[str, Any] | None:
    """Per-turn latency in ms; each transition is a user's end and the agent's reply, in s."""
    samples = call.detail.latency_samples.turn if call.detail.latency_samples else []
    if not samples:
        return None
    turns = call.detail.transcript or []
    replies = [(before, said) for before, said in pairwise(turns) if said.role == "assistant"]
    return {
        "turns": len(samples),
        "avgLatency": round(statistics.fmean(samples), 1),
        "medianLatency": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "latencies": samples,
        "transitions": [
            {"user_end": before.end_s, "bot_start": said.start_s, "latency": latency}
            for (before, said), latency in zip(replies, samples, strict=True)
        ],
    }


def _post_call_analytics(call: SimCall) -> dict[str, Any]:
    analysis = call.detail.analysis
    if call.answered_at is None or analysis is None:
        return {}
    return {
        "summary": analysis.summary,
        "dispositionMetrics": [{"name": "success", "value": analysis.success}],
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


PLATFORM = Platform(
    webhooks=timed_webhooks,
    secret_name="webhook_secret",  # noqa: S106 - a credential's name
    sign=signed_request,
    call_id=call_id,
    api={"/conversation/{call_id}": conversation},
)
