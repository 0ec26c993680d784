"""Vapi's side of a simulated call: its server messages (with a bearer) and `GET /call/{id}`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from callwatch.model.records import Recording, Utterance
from callwatch.simulator.base import Platform
from callwatch.simulator.calls import SimCall

REPORT_AFTER = timedelta(seconds=4)  # Vapi sends the report once post-processing is done
ENDED_REASON = {
    "user_hangup": "customer-ended-call",
    "agent_hangup": "assistant-ended-call",
    "transferred": "assistant-forwarded-call",
    "no_answer": "customer-did-not-answer",
    "busy": "customer-busy",
    "error": "twilio-failed-to-connect-call",
    "other": "manually-canceled",
}
ROLES = {"assistant": "bot", "user": "user"}


def timed_webhooks(call: SimCall, embed_detail: bool) -> list[tuple[datetime, dict[str, Any]]]:
    """status-update at each step, user-interrupted when the caller talks over the assistant,
    then the end-of-call report. Vapi's report always carries the call: `embed_detail` changes
    nothing."""
    steps = [("ringing", call.ringing_at)]
    if call.direction == "outbound":
        steps.insert(0, ("queued", call.started_at))
    if call.answered_at is not None:
        steps.append(("in-progress", call.answered_at))
    sent = [(at, _message(call, "status-update", at, status=status)) for status, at in steps]
    sent += [(at, _message(call, "user-interrupted", at)) for at in _interruptions(call)]
    reason = _ended_reason(call)
    sent.append(
        (
            call.ended_at,
            _message(call, "status-update", call.ended_at, status="ended", endedReason=reason),
        )
    )
    reported = call.ended_at + REPORT_AFTER
    detail = call.detail
    report = _message(
        call,
        "end-of-call-report",
        reported,
        endedReason=reason,
        startedAt=_iso(call.answered_at or call.started_at),
        endedAt=_iso(call.ended_at),
        durationSeconds=detail.duration_s,
        cost=detail.cost.total if detail.cost else 0.0,
        costs=_cost_items(call),
        artifact=_artifact(call, detail.recording or Recording(status="none")),
        analysis=_analysis(call),
    )
    sent.append((reported, report))
    return sorted(sent, key=lambda item: item[0])


def call_json(call: SimCall, recording: Recording) -> dict[str, Any]:
    """`GET /call/{id}`: the ended call, its artifact holding the recording once it is ready."""
    detail = call.detail
    cost = detail.cost
    return {
        **_call_ref(call),
        "orgId": "5f2c4e0a-0b9d-4d8e-9f1a-3c2b1a0f9e8d",
        "status": "ended",
        "endedReason": _ended_reason(call),
        "createdAt": _iso(call.started_at),
        "startedAt": _iso(call.answered_at or call.started_at),
        "endedAt": _iso(call.ended_at),
        "cost": cost.total if cost else 0.0,
        "costBreakdown": {
            "transport": cost.telephony,
            "stt": cost.stt,
            "llm": cost.llm,
            "tts": cost.tts,
            "vapi": cost.platform,
            "total": cost.total,
        }
        if cost
        else None,
        "artifact": _artifact(call, recording),
        "analysis": _analysis(call),
    }


def bearer(secret: str, body: dict[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
    """JSON bytes with the server credential Vapi sends by default: `Authorization: Bearer`."""
    content = json.dumps(body, separators=(",", ":")).encode()
    return content, {"content-type": "application/json", "authorization": f"Bearer {secret}"}


def _message(call: SimCall, kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "message": {
            "type": kind,
            "timestamp": _ms(at),
            **fields,
            "call": _call_ref(call),
            "phoneNumber": {"number": _our_number(call)},
            "customer": {"number": _customer_number(call)},
            "assistant": {"id": call.agent_id, "name": call.agent_name},
        }
    }


def _call_ref(call: SimCall) -> dict[str, Any]:
    return {
        "id": call.call_id,
        "type": "inboundPhoneCall" if call.direction == "inbound" else "outboundPhoneCall",
        "assistantId": call.agent_id,
        "phoneNumber": {"number": _our_number(call)},
        "customer": {"number": _customer_number(call)},
        "metadata": {"campaign": call.campaign_id} if call.campaign_id else {},
    }


def _artifact(call: SimCall, recording: Recording) -> dict[str, Any]:
    if call.answered_at is None:
        return {"messages": [], "transcript": ""}
    turns = call.detail.transcript or []
    started = call.answered_at
    messages: list[dict[str, Any]] = [
        {
            "role": "system",
            "message": "You are a helpful voice agent.",
            "time": _ms(started),
            "secondsFromStart": 0,
        }
    ]
    messages += [_said(turn, started) for turn in turns if turn.role in ROLES]
    artifact: dict[str, Any] = {
        "messages": messages,
        "transcript": "\n".join(
            f"{'AI' if turn.role == 'assistant' else 'User'}: {turn.content}" for turn in turns
        ),
        "performanceMetrics": _performance(call),
    }
    if recording.url:
        artifact["recording"] = {
            "mono": {"combinedUrl": recording.url},
            "stereoUrl": recording.dual_url,
        }
    return artifact


def _said(turn: Utterance, started: datetime) -> dict[str, Any]:
    start, end = turn.start_s or 0.0, turn.end_s or 0.0
    return {
        "role": ROLES[turn.role],
        "message": turn.content,
        "time": _ms(started + timedelta(seconds=start)),
        "endTime": _ms(started + timedelta(seconds=end)),
        "secondsFromStart": start,
        "duration": round((end - start) * 1000),
    }


def _performance(call: SimCall) -> dict[str, Any]:
    samples = call.detail.latency_samples
    if samples is None:
        return {}
    turns = [
        {
            "modelLatency": llm,
            "voiceLatency": tts,
            "transcriberLatency": stt,
            "endpointingLatency": round(turn - stt - llm - tts, 1),
            "turnLatency": turn,
        }
        for turn, stt, llm, tts in zip(
            samples.turn, samples.stt, samples.llm, samples.tts, strict=True
        )
    ]
    return {
        "turnLatencies": turns,
        "numUserInterrupted": len(_interruptions(call)),
        "numAssistantInterrupted": 0,
    }


def _interruptions(call: SimCall) -> list[datetime]:
    """When the caller started talking over the assistant."""
    if call.answered_at is None:
        return []
    answered = call.answered_at
    return [
        answered + timedelta(seconds=user.start_s or 0)
        for said, user in pairwise(call.detail.transcript or [])
        if said.role == "assistant"
        and user.role == "user"
        and (user.start_s or 0) < (said.end_s or 0)
    ]


def _cost_items(call: SimCall) -> list[dict[str, Any]]:
    cost = call.detail.cost
    if cost is None:
        return []
    parts = {
        "transport": cost.telephony,
        "transcriber": cost.stt,
        "model": cost.llm,
        "voice": cost.tts,
        "vapi": cost.platform,
    }
    return [{"type": kind, "cost": amount} for kind, amount in parts.items() if amount]


def _analysis(call: SimCall) -> dict[str, Any]:
    analysis = call.detail.analysis
    if call.answered_at is None or analysis is None:
        return {}
    return {
        "summary": analysis.summary,
        "structuredData": dict(analysis.data),
        "successEvaluation": "true" if analysis.success else "false",
    }


def _ended_reason(call: SimCall) -> str:
    return ENDED_REASON.get(call.detail.end_reason or "", "customer-ended-call")


def _our_number(call: SimCall) -> str:
    return call.to_number if call.direction == "inbound" else call.from_number


def _customer_number(call: SimCall) -> str:
    return call.from_number if call.direction == "inbound" else call.to_number


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


PLATFORM = Platform(
    webhooks=timed_webhooks,
    secret_name="webhook_secret",  # noqa: S106 - a credential's name
    sign=bearer,
    api={"/call/{call_id}": call_json},
)
