"""Retell AI's side of a simulated call: its signed webhooks and `GET /v2/get-call/{call_id}`."""

from __future__ import annotations

import hashlib
import hmac
import json
import statistics
from datetime import datetime, timedelta
from typing import Any

from callwatch.model.call_metrics import percentile
from callwatch.model.records import Recording, Utterance
from callwatch.simulator.base import Platform
from callwatch.simulator.calls import SimCall

ANALYSIS_AFTER = timedelta(seconds=15)
DISCONNECTION_REASON = {
    "user_hangup": "user_hangup",
    "agent_hangup": "agent_hangup",
    "transferred": "call_transfer",
    "no_answer": "dial_no_answer",
    "busy": "dial_busy",
    "error": "dial_failed",
    "other": "manual_stopped",
}
ROLES = {"assistant": "agent", "user": "user"}


def call_id(call: SimCall) -> str:
    """Retell's id format: `call_` and 27 hex digits."""
    return "call_" + _hex(call.call_id, 27)


def agent_id(call: SimCall) -> str:
    return "agent_" + _hex(call.agent_id, 24)


def timed_webhooks(call: SimCall, embed_detail: bool) -> list[tuple[datetime, dict[str, Any]]]:
    """call_started when it connects, call_ended at hangup, call_analyzed a little later.

    Every Retell webhook carries the call object: `embed_detail` changes nothing."""
    recording = call.detail.recording or Recording(status="none")
    ended = call_object(call, recording)
    sent: list[tuple[datetime, dict[str, Any]]] = []
    if call.answered_at is not None:
        started = {
            key: ended[key]
            for key in (
                "call_id",
                "call_type",
                "agent_id",
                "agent_name",
                "agent_version",
                "direction",
                "from_number",
                "to_number",
                "start_timestamp",
                "metadata",
            )
        }
        sent.append((call.answered_at, {"event": "call_started", "call": started}))
    sent.append((call.ended_at, {"event": "call_ended", "call": ended}))
    analysis = _analysis(call)
    if analysis is not None:
        analyzed = dict(ended, call_analysis=analysis)
        sent.append((call.ended_at + ANALYSIS_AFTER, {"event": "call_analyzed", "call": analyzed}))
    return sent


def get_call(call: SimCall, recording: Recording) -> dict[str, Any]:
    """`GET /v2/get-call/{call_id}`: the call object, with its analysis once there is one."""
    found = call_object(call, recording)
    analysis = _analysis(call)
    return dict(found, call_analysis=analysis) if analysis else found


def call_object(call: SimCall, recording: Recording) -> dict[str, Any]:
    """The call as Retell describes it after it ended (without the analysis)."""
    detail = call.detail
    connected = call.answered_at is not None
    started = call.answered_at or call.started_at
    found: dict[str, Any] = {
        "call_id": call_id(call),
        "call_type": "phone_call",
        "agent_id": agent_id(call),
        "agent_name": call.agent_name,
        "agent_version": 3,
        "call_status": "ended" if connected else "not_connected",
        "direction": call.direction,
        "from_number": call.from_number,
        "to_number": call.to_number,
        "start_timestamp": _ms(started),
        "end_timestamp": _ms(call.ended_at),
        "duration_ms": round((detail.duration_s or 0) * 1000),
        "disconnection_reason": DISCONNECTION_REASON.get(detail.end_reason or "", "user_hangup"),
        "metadata": {"campaign": call.campaign_id} if call.campaign_id else {},
        "data_storage_setting": "everything",
    }
    if connected:
        turns = detail.transcript or []
        found |= {
            "transcript": "\n".join(
                f"{'Agent' if turn.role == 'assistant' else 'User'}: {turn.content}"
                for turn in turns
            ),
            "transcript_object": [_turn(turn) for turn in turns if turn.role in ROLES],
            "recording_url": recording.url,
            "recording_multi_channel_url": recording.dual_url,
            "public_log_url": f"https://retellai.invalid/{call_id(call)}/public.log",
            "latency": _latency(call),
        }
    cost = _call_cost(call)
    if cost is not None:
        found["call_cost"] = cost
    return found


def signed_request(secret: str, body: dict[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
    """JSON bytes with `x-retell-signature: v=<ms>,d=<hex HMAC-SHA256(api key, body + v)>`."""
    content = json.dumps(body, separators=(",", ":")).encode()
    stamp = int(now * 1000)
    digest = hmac.new(secret.encode(), content + str(stamp).encode(), hashlib.sha256).hexdigest()
    return content, {
        "content-type": "application/json",
        "x-retell-signature": f"v={stamp},d={digest}",
    }


def _turn(turn: Utterance) -> dict[str, Any]:
    """An utterance with its words spread evenly over its time, in seconds from the start."""
    words = turn.content.split() or [""]
    start, end = turn.start_s or 0.0, turn.end_s or 0.0
    step = (end - start) / len(words)
    return {
        "role": ROLES[turn.role],
        "content": turn.content,
        "words": [
            {
                "word": word,
                "start": round(start + index * step, 3),
                "end": round(end if index == len(words) - 1 else start + (index + 1) * step, 3),
            }
            for index, word in enumerate(words)
        ],
    }


def _latency(call: SimCall) -> dict[str, Any]:
    samples = call.detail.latency_samples
    if samples is None:
        return {}
    stages = {"e2e": samples.turn, "asr": samples.stt, "llm": samples.llm, "tts": samples.tts}
    return {name: _stage(values) for name, values in stages.items() if values}


def _stage(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "p50": statistics.median(ordered),
        "p90": round(percentile(ordered, 90), 1),
        "p95": round(percentile(ordered, 95), 1),
        "p99": round(percentile(ordered, 99), 1),
        "max": ordered[-1],
        "min": ordered[0],
        "num": len(ordered),
        "values": list(values),
    }


def _call_cost(call: SimCall) -> dict[str, Any] | None:
    """Cents. Retell's voice engine includes speech recognition, so STT is billed in it."""
    cost = call.detail.cost
    if cost is None:
        return None
    products = [
        ("voice_engine", (cost.platform or 0) + (cost.stt or 0)),
        ("elevenlabs_tts", cost.tts or 0),
        ("gpt-4o-mini", cost.llm or 0),
        ("twilio_telephony", cost.telephony or 0),
    ]
    duration = call.detail.duration_s or 0
    return {
        "product_costs": [
            {"product": name, "cost": round(amount * 100, 4)} for name, amount in products if amount
        ],
        "combined_cost": round((cost.total or 0) * 100, 4),
        "total_duration_seconds": float(round(duration)),
        "total_duration_unit_price": round((cost.total or 0) * 100 / duration, 6)
        if duration
        else 0.0,
    }


def _analysis(call: SimCall) -> dict[str, Any] | None:
    analysis = call.detail.analysis
    if call.answered_at is None or analysis is None:
        return None
    return {
        "call_summary": analysis.summary,
        "in_voicemail": False,
        "user_sentiment": (analysis.sentiment or "unknown").capitalize(),
        "call_successful": analysis.success,
        "custom_analysis_data": dict(analysis.data),
    }


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _hex(text: str, digits: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


PLATFORM = Platform(
    webhooks=timed_webhooks,
    secret_name="api_key",  # noqa: S106 - a credential's name: Retell signs with the API key
    sign=signed_request,
    call_id=call_id,
    api={"/v2/get-call/{call_id}": get_call},
)
