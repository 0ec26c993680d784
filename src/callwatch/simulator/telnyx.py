"""Telnyx's side of a simulated call: its Ed25519-signed Call Control events and `GET /calls`."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from callwatch.model.events import CallStatus
from callwatch.model.records import Recording
from callwatch.providers.telnyx.provider import signing_key
from callwatch.simulator.base import Platform
from callwatch.simulator.calls import SimCall

RECORDING_AFTER = timedelta(seconds=3)
COST_AFTER = timedelta(seconds=8)
HANGUP_CAUSES = {
    CallStatus.completed: ("normal_clearing", "200"),
    CallStatus.no_answer: ("timeout", "480"),
    CallStatus.busy: ("user_busy", "486"),
    CallStatus.failed: ("unspecified", "503"),
    CallStatus.canceled: ("originator_cancel", "487"),
}
# Which side of the leg hung up: the customer is the caller of an incoming leg.
CUSTOMER_SIDE = {"inbound": "caller", "outbound": "callee"}
AGENT_SIDE = {"inbound": "callee", "outbound": "caller"}
# Telnyx bills the voice agent's platform share as call control.
COST_PARTS = (
    ("call-control", ("telephony", "platform")),
    ("transcription", ("stt",)),
    ("text-to-speech", ("tts",)),
    ("ai-inference", ("llm",)),
)


def session_id(call: SimCall) -> str:
    """The call session: what callwatch keys a Telnyx call by."""
    return _uuid("session" + call.call_id)


def call_control_id(call: SimCall) -> str:
    """The leg's id for commands and `GET /calls/{id}`: v3: and URL-safe base64."""
    raw = hashlib.sha256(("control" + call.call_id).encode()).digest()[:30]
    return "v3:" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def timed_webhooks(call: SimCall, embed_detail: bool) -> list[tuple[datetime, dict[str, Any]]]:
    """(when Telnyx sends it, body) for each event of the call's one leg, in sending order.

    The hangup carries the call; `embed_detail` changes nothing."""
    direction = "incoming" if call.direction == "inbound" else "outgoing"
    sent: list[tuple[datetime, dict[str, Any]]] = []

    def event(kind: str, at: datetime, **payload: Any) -> None:
        body = {
            "data": {
                "record_type": "event",
                "event_type": kind,
                "id": _uuid(f"{kind}{call.call_id}"),
                "occurred_at": _iso(at),
                "payload": {**_leg(call), **payload},
            },
            "meta": {"attempt": 1, "delivered_to": "https://hooks.callwatch-sim.invalid/telnyx"},
        }
        sent.append((at, body))

    numbers = {"from": call.from_number, "to": call.to_number}
    state = "parked" if direction == "incoming" else "bridging"
    event("call.initiated", call.started_at, direction=direction, state=state, **numbers)
    if call.answered_at is not None:
        event("call.answered", call.answered_at, start_time=_iso(call.started_at), **numbers)
    event("call.hangup", call.ended_at, **numbers, **_hangup(call))
    recording = call.detail.recording
    if recording is not None and recording.url and call.answered_at is not None:
        event(
            "call.recording.saved",
            call.ended_at + RECORDING_AFTER,
            channels="single",
            recording_started_at=_iso(call.answered_at),
            recording_ended_at=_iso(call.ended_at),
            recording_urls={"wav": recording.url, "mp3": None},
            public_recording_urls={},
        )
    event("call.cost", call.ended_at + COST_AFTER, **_cost(call))
    return sent


def call_status(call: SimCall, recording: Recording) -> dict[str, Any]:
    """`GET /v2/calls/{call_control_id}`: the leg as Telnyx keeps it for a while."""
    return {
        "data": {
            "record_type": "call",
            **_leg(call),
            "is_alive": False,
            "call_duration": round(call.detail.duration_s or 0),
            "start_time": _iso(call.started_at),
            "end_time": _iso(call.ended_at),
        }
    }


def signed_request(secret: str, body: dict[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
    """JSON bytes signed as Telnyx signs: Ed25519 over "{timestamp}|{body}", base64."""
    content = json.dumps(body, separators=(",", ":")).encode()
    stamp = str(int(now))
    signature = signing_key(secret).sign(stamp.encode() + b"|" + content)
    return content, {
        "content-type": "application/json",
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": stamp,
    }


def _leg(call: SimCall) -> dict[str, Any]:
    return {
        "call_control_id": call_control_id(call),
        "call_leg_id": _uuid("leg" + call.call_id),
        "call_session_id": session_id(call),
        "connection_id": "1684641123236054244",
        "client_state": None,
    }


def _hangup(call: SimCall) -> dict[str, Any]:
    cause, sip = HANGUP_CAUSES[call.status]
    customer_hung_up = call.detail.end_reason in ("user_hangup", "no_answer", "busy")
    side = (CUSTOMER_SIDE if customer_hung_up else AGENT_SIDE)[call.direction]
    hangup: dict[str, Any] = {
        "state": "hangup",
        "start_time": _iso(call.started_at),
        "end_time": _iso(call.ended_at),
        "hangup_cause": cause,
        "hangup_source": side,
        "sip_hangup_cause": sip,
    }
    if call.answered_at is not None:
        packets = round((call.detail.duration_s or 0) * 50)
        hangup["call_quality_stats"] = {
            "inbound": {
                "mos": "4.41",
                "jitter_max_variance": "3.12",
                "jitter_packet_count": "0",
                "packet_count": str(packets),
                "skip_packet_count": str(packets // 400),
            },
            "outbound": {"packet_count": str(packets), "skip_packet_count": "0"},
        }
    return hangup


def _cost(call: SimCall) -> dict[str, Any]:
    cost = call.detail.cost
    dumped = cost.model_dump() if cost else {}
    amounts = {part: sum(dumped.get(name) or 0 for name in names) for part, names in COST_PARTS}
    parts = [
        {
            "call_part": part,
            "billed_duration_secs": round(call.detail.duration_s or 0),
            "cost": f"{amount:.4f}",
            "currency": "USD",
            "rate": "0.0020",
        }
        for part, amount in amounts.items()
        if amount
    ]
    return {
        "status": "success",
        "total_cost": f"{(cost.total if cost else None) or 0:.4f}",
        "billed_duration_secs": round(call.detail.billed_duration_s or 0),
        "cost_parts": parts,
    }


def _uuid(text: str) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16], version=4))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


PLATFORM = Platform(
    webhooks=timed_webhooks,
    secret_name="private_key",  # noqa: S106 - a credential's name
    sign=signed_request,
    call_id=call_control_id,
    api={"/calls/{call_id}": call_status},
)
