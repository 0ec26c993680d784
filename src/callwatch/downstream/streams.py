"""Ops streams in Redis (`callwatch:calls`, `callwatch:alerts`) and the counters kept beside them.

Best effort: the entries are added after the database commit, and a Redis error is logged, not
raised (the database stays the truth; subscriptions are the channel with retries).
"""

import json
import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from redis import Redis, RedisError
from redis.client import Pipeline

from callwatch.downstream.effects import StreamEntry
from callwatch.model.records import CallRecord
from callwatch.runtime import COUNTERS

log = logging.getLogger("callwatch.streams")

CALLS_STREAM = "callwatch:calls"
ALERTS_STREAM = "callwatch:alerts"
RATE_LIMITED = "deliveries_rate_limited"  # in COUNTERS: deliveries put off by a rate limit
# Periodic task → the Unix time it last finished, read by /metrics (alerts: beat or workers down).
HEARTBEATS = "callwatch:heartbeats"
# From the end of a call to its assembled record; the recording wait is part of it.
ASSEMBLY_BUCKETS_S = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def bucket_of(value: float, bounds: Sequence[float]) -> str:
    """The `le` label of the first bucket that holds `value`."""
    return next((f"{bound:g}" for bound in bounds if value <= bound), "+Inf")


class CallSummary(BaseModel):
    """What `callwatch:calls` says about an assembled call (the record is at /api/calls/{id})."""

    id: str
    org_id: str
    source: str
    provider: str
    provider_call_id: str
    agent_id: str | None
    status: str | None
    end_reason: str | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    recording: str
    cost_total: float | None
    cost_currency: str | None
    turn_p95_ms: float | None
    time_to_first_word_ms: float | None
    assembled_at: datetime | None


def call_summary(record: CallRecord) -> dict[str, Any]:
    turn = record.latency.turn
    summary = CallSummary(
        id=record.id,
        org_id=record.org_id,
        source=record.source,
        provider=record.provider,
        provider_call_id=record.provider_call_id,
        agent_id=record.agent_id,
        status=record.status,
        end_reason=record.end_reason,
        started_at=record.created_at,
        ended_at=record.ended_at,
        duration_s=record.duration_s,
        recording=record.recording.status,
        cost_total=record.cost.total if record.cost else None,
        cost_currency=record.cost.currency if record.cost else None,
        turn_p95_ms=turn.p95 if turn else None,
        time_to_first_word_ms=record.latency.time_to_first_word_ms,
        assembled_at=record.assembly.assembled_at,
    )
    return summary.model_dump(mode="json")


def fields(entry: StreamEntry) -> dict[str, str]:
    """The entry as Redis stream fields (no call: an empty `call_id`)."""
    return {
        "type": entry.type,
        "org_id": entry.org_id,
        "call_id": entry.call_id or "",
        "payload": json.dumps(entry.payload, separators=(",", ":")),
    }


def assembly_seconds(payload: dict[str, Any]) -> float | None:
    """From the call's end (platform clock) to its assembly (ours); None if either is unknown."""
    ended, assembled = payload.get("ended_at"), payload.get("assembled_at")
    if not isinstance(ended, str) or not isinstance(assembled, str):
        return None
    try:
        delta = datetime.fromisoformat(assembled) - datetime.fromisoformat(ended)
    except (TypeError, ValueError):
        return None
    return max(0.0, delta.total_seconds())


def _count(pipe: Pipeline, entry: StreamEntry) -> None:
    if entry.stream == ALERTS_STREAM:
        pipe.hincrby(COUNTERS, f"alerts|{entry.type}", 1)
        return
    if entry.type != "call.assembled":
        return
    pipe.hincrby(COUNTERS, f"calls_assembled|{entry.payload.get('provider', 'unknown')}", 1)
    seconds = assembly_seconds(entry.payload)
    if seconds is not None:
        pipe.hincrby(COUNTERS, f"assembly_s|{bucket_of(seconds, ASSEMBLY_BUCKETS_S)}", 1)
        pipe.hincrbyfloat(COUNTERS, "assembly_s|sum", seconds)


def publish(redis: Redis, entries: Sequence[StreamEntry], maxlen: int) -> None:
    """XADD each entry to its stream, trimmed to about `maxlen`, in one round trip."""
    if not entries:
        return
    pipe = redis.pipeline(transaction=False)
    for entry in entries:
        pipe.xadd(entry.stream, fields(entry), maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        _count(pipe, entry)
    try:
        pipe.execute()
    except RedisError as exc:
        log.warning(
            "stream entries not added",
            extra={
                "entries": len(entries),
                "call_id": entries[0].call_id,
                "error": f"{type(exc).__name__}: {exc}",
            },
        )


def heartbeat(redis: Redis, task: str, at: datetime) -> None:
    """Note that periodic `task` finished at `at`; best effort, like the streams."""
    try:
        redis.hset(HEARTBEATS, task, str(at.timestamp()))
    except RedisError as exc:
        log.warning("heartbeat not noted", extra={"task": task, "error": type(exc).__name__})


def forget(redis: Redis, call_ids: Collection[str], page: int = 1000) -> int:
    """Delete these calls' entries from both ops streams (a deleted call's summary): one walk
    over each stream, capped at `stream_maxlen` entries. Best effort, as every stream write is;
    the number deleted."""
    wanted = {call_id.encode() for call_id in call_ids}
    deleted = 0
    for stream in (CALLS_STREAM, ALERTS_STREAM):
        start = "-"
        while True:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = redis.xrange(  # type: ignore[assignment]
                stream, min=start, max="+", count=page
            )
            found = [entry_id for entry_id, fields in entries if fields.get(b"call_id") in wanted]
            if found:
                deleted += int(redis.xdel(stream, *found))
            if len(entries) < page:
                break
            start = "(" + entries[-1][0].decode()
    return deleted
