"""A record in the shape of `GET /api/agents/{agent_id}/call_stats` (reference 000, Origins AI)."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from callwatch.model.events import CallStatus
from callwatch.model.records import CallRecord, Stats

OriginsStatus = Literal["ANSWERED", "FAILED", "INITIATED", "QUEUED"]
NOT_ANSWERED = {CallStatus.failed, CallStatus.no_answer, CallStatus.busy, CallStatus.canceled}


class AgentCall(BaseModel):
    """One call as reference 000 lists it; `provider_call_id` is ours, added."""

    call_id: str
    provider_call_id: str
    call_agent_id: str | None
    stt_data: list[dict[str, Any]]
    llm_data: list[dict[str, Any]]
    tts_data: list[dict[str, Any]]
    call_transcription: list[dict[str, Any]]
    call_recording_url: str | None
    from_number: str | None
    to_number: str | None
    recording_id: str | None
    call_context: dict[str, Any]
    call_status: OriginsStatus | None
    call_duration: float | None
    billed_duration: float | None
    initiation_time: datetime | None
    answer_time: datetime | None
    end_time: datetime | None
    hangup_cause_name: str | None
    hangup_source: str | None
    call_direction: Literal["inbound", "outbound"] = "inbound"
    task_id: int | None = None
    call_state_changes: list[dict[str, Any]]
    call_triggered: bool | None
    call_quality: dict[str, Any]
    call_insights: dict[str, Any]
    call_timeline: list[dict[str, Any]] | None
    tool_data: list[dict[str, Any]] = Field(default_factory=list)
    audio_config: dict[str, Any] = Field(default_factory=dict)
    org_id: str


def status_of(record: CallRecord) -> OriginsStatus | None:
    if record.answered_at is not None:
        return "ANSWERED"
    if record.status is None:
        return None
    if record.status in NOT_ANSWERED:
        return "FAILED"
    if record.status == CallStatus.queued:
        return "QUEUED"
    if record.status == CallStatus.completed:
        return "ANSWERED"
    return "INITIATED"


def hangup_source(record: CallRecord) -> str | None:
    """Plivo's vocabulary: the caller or the callee hung up, or the call ended in an error."""
    customer_is_caller = record.direction == "inbound"
    if record.end_reason == "user_hangup":
        return "Caller" if customer_is_caller else "Callee"
    if record.end_reason == "agent_hangup":
        return "Callee" if customer_is_caller else "Caller"
    if record.end_reason == "error":
        return "Error"
    return None if record.end_reason is None else "Unknown"


def _stage(stats: Stats | None) -> list[dict[str, Any]]:
    return [] if stats is None else [stats.model_dump(mode="json")]


def agent_call(record: CallRecord) -> AgentCall:
    timeline = [entry.model_dump(mode="json") for entry in record.timeline]
    return AgentCall(
        call_id=record.id,
        provider_call_id=record.provider_call_id,
        call_agent_id=record.agent_id,
        stt_data=_stage(record.latency.stt),
        llm_data=_stage(record.latency.llm),
        tts_data=_stage(record.latency.tts),
        call_transcription=[u.model_dump(mode="json") for u in record.transcript or []],
        call_recording_url=record.recording.url,
        from_number=record.from_number,
        to_number=record.to_number,
        recording_id=None,
        call_context=record.metadata,
        call_status=status_of(record),
        call_duration=record.duration_s,
        billed_duration=record.billed_duration_s,
        initiation_time=record.initiated_at,
        answer_time=record.answered_at,
        end_time=record.ended_at,
        hangup_cause_name=record.end_reason_raw or record.end_reason,
        hangup_source=hangup_source(record),
        call_direction="outbound" if record.direction == "outbound" else "inbound",
        call_state_changes=timeline,
        call_triggered=bool(record.timeline) or None,
        call_quality=record.quality.model_dump(mode="json") if record.quality else {},
        call_insights=record.analysis.model_dump(mode="json") if record.analysis else {},
        call_timeline=timeline,
        org_id=record.org_id,
    )
