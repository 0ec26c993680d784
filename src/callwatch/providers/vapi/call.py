"""Vapi's Call object (GET /call/{id}, a report's call): its parties and what its end means.

Confirmed in Vapi's SDKs (server-sdk-csharp `PerformanceMetrics`, `TurnLatency`; the Swift
`BotMessage` and end-of-call-report cost items): the per-turn latency names, the message timing
fields, the `costs[]` types.
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from callwatch.model.events import CallFields, CallStatus
from callwatch.model.records import EndReason

UPDATE_STATUSES = {
    "scheduled": CallStatus.queued,
    "queued": CallStatus.queued,
    "ringing": CallStatus.ringing,
    "in-progress": CallStatus.in_progress,
    "forwarding": CallStatus.in_progress,
}
END_REASONS: dict[str, EndReason] = {
    "customer-ended-call": "user_hangup",
    "customer-did-not-answer": "no_answer",
    "customer-busy": "busy",
    "voicemail": "voicemail",
    "silence-timed-out": "timeout",
    "exceeded-max-duration": "timeout",
    "assistant-forwarded-call": "transferred",
    "manually-canceled": "other",
}
ERROR_WORDS = ("error", "failed", "fault", "not-found", "not-valid", "invalid", "unavailable")
UNANSWERED = {"no_answer": CallStatus.no_answer, "busy": CallStatus.busy}
CANCELED = frozenset({"manually-canceled"})


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Number(Lenient):
    number: str | None = None
    name: str | None = None


class Named(Lenient):
    id: str | None = None
    name: str | None = None


class Mono(Lenient):
    combinedUrl: str | None = None


class RecordingUrls(Lenient):
    mono: Mono | None = None
    stereoUrl: str | None = None


class Turn(Lenient):
    modelLatency: float | None = None
    voiceLatency: float | None = None
    transcriberLatency: float | None = None
    endpointingLatency: float | None = None
    turnLatency: float | None = None


class Performance(Lenient):
    turnLatencies: list[Turn] = Field(default_factory=list)
    modelLatencyAverage: float | None = None
    voiceLatencyAverage: float | None = None
    transcriberLatencyAverage: float | None = None
    endpointingLatencyAverage: float | None = None
    turnLatencyAverage: float | None = None
    numUserInterrupted: int | None = None
    numAssistantInterrupted: int | None = None


class Said(Lenient):
    role: str
    message: str | None = None
    time: float | None = None
    endTime: float | None = None
    secondsFromStart: float | None = None


class Artifact(Lenient):
    recording: RecordingUrls | None = None
    recordingUrl: str | None = None
    stereoRecordingUrl: str | None = None
    messages: list[Said] | None = None
    transcript: str | None = None
    performanceMetrics: Performance | None = None


class VapiAnalysis(Lenient):
    summary: str | None = None
    structuredData: Any = None  # follows the assistant's own schema: any JSON
    successEvaluation: Any = None


class CostItem(Lenient):
    type: str
    cost: float | None = None


class Breakdown(Lenient):
    transport: float | None = None
    stt: float | None = None
    llm: float | None = None
    tts: float | None = None
    vapi: float | None = None
    total: float | None = None


class VapiCall(Lenient):
    """The Call of GET /call/{id}; a report's own fields are laid over its `call` into one."""

    id: str = Field(min_length=1, max_length=200)
    type: str | None = None
    status: str | None = None
    endedReason: str | None = None
    createdAt: datetime | None = None
    startedAt: datetime | None = None
    endedAt: datetime | None = None
    cost: float | None = None
    costs: list[CostItem] | None = None
    costBreakdown: Breakdown | None = None
    artifact: Artifact | None = None
    analysis: VapiAnalysis | None = None
    customer: Number | None = None
    phoneNumber: Number | None = None
    assistantId: str | None = None
    assistant: Named | None = None
    campaignId: str | None = None
    metadata: Any = None
    recordingUrl: str | None = None
    stereoRecordingUrl: str | None = None
    messages: list[Said] | None = None
    transcript: str | None = None
    summary: str | None = None
    durationSeconds: float | None = None
    phoneCallProviderId: str | None = None


def call_fields(call: VapiCall) -> CallFields:
    direction, channel = _kind(call.type)
    ours = call.phoneNumber.number if call.phoneNumber else None
    customer = call.customer.number if call.customer else None
    numbers = {"inbound": (customer, ours), "outbound": (ours, customer)}
    from_number, to_number = numbers.get(direction or "", (None, None))
    return CallFields(
        agent_id=call.assistantId or (call.assistant.id if call.assistant else None),
        agent_name=call.assistant.name if call.assistant else None,
        campaign_id=call.campaignId,
        direction=direction,
        channel=channel,
        from_number=from_number,
        to_number=to_number,
        customer_number=customer,
        metadata=call.metadata if isinstance(call.metadata, dict) else {},
    )


def _kind(call_type: str | None) -> tuple[str | None, str | None]:
    text = (call_type or "").lower()
    if "inbound" in text:
        return "inbound", "phone"
    if "outbound" in text:
        return "outbound", "phone"
    if "web" in text:
        return None, "web"
    return None, None


def end_reason_of(reason: str | None) -> EndReason | None:
    """Vapi's endedReason (hundreds of values) as one of ours."""
    if not reason:
        return None
    text = reason.lower()
    if text in END_REASONS:
        return END_REASONS[text]
    if any(word in text for word in ERROR_WORDS):
        return "error"
    if "timed-out" in text or "timeout" in text:
        return "timeout"
    if text.startswith("assistant-"):
        return "agent_hangup"
    if text.startswith("customer-") and "ended" in text:
        return "user_hangup"
    return "other"


def status_of(reason: str | None) -> CallStatus:
    """The final status an ended call's reason gives."""
    if (reason or "").lower() in CANCELED:
        return CallStatus.canceled
    end_reason = end_reason_of(reason)
    if end_reason == "error":
        return CallStatus.failed
    return UNANSWERED.get(end_reason or "", CallStatus.completed)


def reason_fields(reason: str | None) -> dict[str, Any]:
    return {"end_reason": end_reason_of(reason), "end_reason_raw": reason}
