"""fixa's side of a simulated call: the analysis it posts when it has measured the recording."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from callwatch.simulator.base import Platform
from callwatch.simulator.calls import SimCall

ANALYSIS_AFTER = timedelta(seconds=30)
DASHBOARD = "https://fixa.dev/observe"
# fixa counts only interruptions longer than this in numInterruptions.
LONG_INTERRUPTION_S = 2.0


def nearest_rank(values: Sequence[float], fraction: float) -> float | None:
    """fixa's percentile: the sorted value at index floor(n * p)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.floor(len(ordered) * fraction))]


def analysis(call: SimCall) -> dict[str, Any] | None:
    """The `{success, call, url}` body for an answered call (fixa needs its recording)."""
    if call.answered_at is None:
        return None
    transcript = call.detail.transcript or []
    # (seconds from start, duration in seconds) of each silence before the agent speaks
    blocks = [
        (user.end_s, round(agent.start_s - user.end_s, 3))
        for user, agent in pairwise(transcript)
        if user.role == "user" and agent.role == "assistant"
        if user.end_s is not None and agent.start_s is not None and agent.start_s > user.end_s
    ]
    first = next((turn for turn in transcript if turn.role == "assistant"), None)
    if first is not None and first.start_s is not None:
        blocks.insert(0, (0.0, first.start_s))
    interruptions = [
        (user.start_s, round(agent.end_s - user.start_s, 3), user.content)
        for agent, user in pairwise(transcript)
        if agent.role == "assistant" and user.role == "user"
        if agent.end_s is not None and user.start_s is not None and user.start_s < agent.end_s
    ]
    latency_ms = [duration * 1000 for _, duration in blocks]
    interruption_ms = [duration * 1000 for _, duration, _ in interruptions]
    success = bool(call.detail.analysis and call.detail.analysis.success)
    fixa_id = hashlib.sha256(call.call_id.encode()).hexdigest()[:32]
    return {
        "success": True,
        "call": {
            "id": fixa_id,
            "customerCallId": call.call_id,
            "vapiCallId": None,
            "status": "completed",
            "result": "success" if success else "failure",
            "failureReason": None if success else "the caller's request was not resolved",
            "stereoRecordingUrl": (
                call.detail.recording.dual_url if call.detail.recording else None
            ),
            "agentId": call.agent_id,
            "duration": call.detail.duration_s,
            "latencyBlocks": [{"secondsFromStart": at, "duration": gap} for at, gap in blocks],
            "interruptions": [
                {"secondsFromStart": at, "duration": duration, "text": text}
                for at, duration, text in interruptions
            ],
            "errors": [],
            "evalResults": [
                {
                    "evalId": "ev_resolved",
                    "eval": {"name": "resolves the caller's request"},
                    "result": str(success).lower(),
                    "success": success,
                    "type": "boolean",
                    "details": "",
                }
            ],
            **{f"latencyP{p}": nearest_rank(latency_ms, p / 100) for p in (50, 90, 95)},
            **{f"interruptionP{p}": nearest_rank(interruption_ms, p / 100) for p in (50, 90, 95)},
            "numInterruptions": sum(ms > LONG_INTERRUPTION_S * 1000 for ms in interruption_ms),
        },
        "url": f"{DASHBOARD}/{call.call_id}",
    }


def timed_webhooks(call: SimCall, embed_detail: bool) -> list[tuple[datetime, dict[str, Any]]]:
    """fixa's one webhook, some time after the call, once it has analysed the recording."""
    body = analysis(call)
    return [(call.ended_at + ANALYSIS_AFTER, body)] if body is not None else []


PLATFORM = Platform(webhooks=timed_webhooks, secret_name=None, analyses="generic")
