"""The `generic` provider's side of a simulated call: its webhooks, signed, and its detail."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from callwatch import signatures
from callwatch.model.events import CallStatus
from callwatch.model.records import Recording
from callwatch.simulator.base import Platform
from callwatch.simulator.calls import SimCall


def timed_webhooks(call: SimCall, embed_detail: bool) -> list[tuple[datetime, dict[str, Any]]]:
    """(when it is sent, body) for each of the call's webhooks, in sending order."""
    moments = [at for _, at in status_steps(call)]
    return list(zip(moments, events_for(call, embed_detail=embed_detail), strict=True))


def events_for(call: SimCall, *, embed_detail: bool) -> list[dict[str, Any]]:
    """The call's generic-provider webhook bodies in sending order (design.md §5)."""
    steps = status_steps(call)
    events = [_event("call.status_changed", call, status, at) for status, at in steps[:-1]]
    final_status, ended_at = steps[-1]
    completion = _event("call.completed", call, final_status, ended_at)
    if embed_detail:
        completion["data"] |= call.detail.model_dump(mode="json", exclude_none=True)
    return [*events, completion]


def signed_request(secret: str, body: dict[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
    """Compact JSON bytes plus content-type and Standard Webhooks headers for `body`."""
    content = json.dumps(body, separators=(",", ":")).encode()
    msg_id = f"msg_{secrets.token_hex(12)}"
    headers = {"content-type": "application/json"}
    headers |= signatures.headers(secret, msg_id, int(now), content)
    return content, headers


def detail(call: SimCall, recording: Recording) -> dict[str, Any]:
    """The canonical detail a generic source's `detail_url` answers with."""
    shown = None if recording.status == "none" else recording
    served = call.detail.model_copy(update={"recording": shown})
    return served.model_dump(mode="json", exclude_none=True)


def status_steps(call: SimCall) -> list[tuple[CallStatus, datetime]]:
    steps = [(CallStatus.initiated, call.started_at), (CallStatus.ringing, call.ringing_at)]
    if call.answered_at is not None:
        steps.append((CallStatus.in_progress, call.answered_at))
    steps.append((call.status, call.ended_at))
    return steps


def _event(kind: str, call: SimCall, status: CallStatus, at: datetime) -> dict[str, Any]:
    return {
        "type": kind,
        "timestamp": _iso(at),
        "data": {
            "call_id": call.call_id,
            "status": status.value,
            "agent_id": call.agent_id,
            "agent_name": call.agent_name,
            "direction": call.direction,
            "from_number": call.from_number,
            "to_number": call.to_number,
            "campaign_id": call.campaign_id,
            "metadata": {},
        },
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


PLATFORM = Platform(
    webhooks=timed_webhooks,
    secret_name="webhook_secret",  # noqa: S106 - a credential's name
    sign=signed_request,
    api={"/calls/{call_id}": detail},
)
