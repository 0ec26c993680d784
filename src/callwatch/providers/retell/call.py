"""Retell's call object, as its webhooks and get-call send it, and what its status and reason mean.

Confirmed in retell-sdk 6.2 (`types/phone_call_response.py`, `types/agent_response.py`): epoch-ms
timestamps, cents, word times in seconds from the start of the call audio, latency stages in ms
with raw `values`.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from callwatch.model.events import CallStatus
from callwatch.model.records import EndReason
from callwatch.validation import MAX_EPOCH_MS

LIVE_STATUSES = {"registered": CallStatus.initiated, "ongoing": CallStatus.in_progress}
# Disconnection reasons that mean the call never connected, and what that call was.
UNCONNECTED: dict[str, CallStatus] = {
    "dial_no_answer": CallStatus.no_answer,
    "dial_busy": CallStatus.busy,
    "user_declined": CallStatus.busy,  # a declined call, as carriers report it
    "dial_failed": CallStatus.failed,
    "invalid_destination": CallStatus.failed,
    "telephony_provider_permission_denied": CallStatus.failed,
    "telephony_provider_unavailable": CallStatus.failed,
    "sip_routing_error": CallStatus.failed,
    "marked_as_spam": CallStatus.failed,
    "network_blocked": CallStatus.failed,
}
# Why a `not_connected` call with another reason did not connect.
NOT_CONNECTED = {"manual_stopped": CallStatus.canceled}
END_REASONS: dict[str, EndReason] = {
    "user_hangup": "user_hangup",
    "agent_hangup": "agent_hangup",
    "call_transfer": "transferred",
    "transfer_bridged": "transferred",
    "call_take_over": "transferred",
    "voicemail_reached": "voicemail",
    "inactivity": "timeout",
    "max_duration_reached": "timeout",
    "registered_call_timeout": "timeout",
    "dial_no_answer": "no_answer",
    "dial_busy": "busy",
    "user_declined": "busy",
    "dial_failed": "error",
    "invalid_destination": "error",
    "telephony_provider_permission_denied": "error",
    "telephony_provider_unavailable": "error",
    "sip_routing_error": "error",
    "concurrency_limit_reached": "error",
    "no_concurrency_fallback": "error",
    "no_valid_payment": "error",
    "credit_exhausted": "error",
    "budget_reached": "error",
}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Word(_Lenient):
    word: str | None = None
    start: float | None = None
    end: float | None = None


class Turn(_Lenient):
    role: str
    content: str = ""
    words: list[Word] = Field(default_factory=list)


class Stage(_Lenient):
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    min: float | None = None
    num: float | None = None
    values: list[float] | None = None


class Latencies(_Lenient):
    e2e: Stage | None = None
    asr: Stage | None = None
    llm: Stage | None = None
    tts: Stage | None = None


class ProductCost(_Lenient):
    product: str
    cost: float


class CallCost(_Lenient):
    combined_cost: float | None = None
    product_costs: list[ProductCost] = Field(default_factory=list)
    total_duration_seconds: float | None = None


class CallAnalysis(_Lenient):
    call_summary: str | None = None
    call_successful: bool | None = None
    user_sentiment: str | None = None
    in_voicemail: bool | None = None
    custom_analysis_data: Any = None  # the agent's own schema


class TelephonyIdentifier(_Lenient):
    twilio_call_sid: str | None = None


class RetellCall(_Lenient):
    """The call object of the webhooks and of get-call (the same content, per Retell)."""

    call_id: str = Field(min_length=1, max_length=200)
    call_type: str | None = None
    agent_id: str | None = None
    agent_name: str | None = None
    agent_version: int | None = None
    call_status: str | None = None
    direction: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    start_timestamp: int | None = Field(None, ge=0, le=MAX_EPOCH_MS)
    end_timestamp: int | None = Field(None, ge=0, le=MAX_EPOCH_MS)
    duration_ms: int | None = Field(None, ge=0)
    disconnection_reason: str | None = None
    transcript: str | None = None
    transcript_object: list[Turn] | None = None
    recording_url: str | None = None
    recording_multi_channel_url: str | None = None
    data_storage_setting: str | None = None
    public_log_url: str | None = None
    latency: Latencies | None = None
    call_cost: CallCost | None = None
    call_analysis: CallAnalysis | None = None
    metadata: Any = None
    telephony_identifier: TelephonyIdentifier | None = None
    transfer_destination: str | None = None

    @property
    def started(self) -> datetime | None:
        return _from_ms(self.start_timestamp)

    @property
    def ended(self) -> datetime | None:
        return _from_ms(self.end_timestamp)

    @property
    def channel(self) -> str | None:
        return {"phone_call": "phone", "web_call": "web"}.get(self.call_type or "")


def status_of(call_status: str | None, reason: str | None) -> CallStatus | None:
    """Retell's call status and disconnection reason as one of ours."""
    if reason in UNCONNECTED:
        return UNCONNECTED[reason or ""]
    if call_status == "not_connected":
        return NOT_CONNECTED.get(reason or "", CallStatus.failed)
    if call_status == "ended":
        return CallStatus.completed
    if call_status == "error":
        return CallStatus.failed
    return LIVE_STATUSES.get(call_status or "")


def final_status(call: RetellCall) -> CallStatus:
    """The status a final event gives: a call Retell still reports live is over by then."""
    status = status_of(call.call_status, call.disconnection_reason)
    if status is None or status in LIVE_STATUSES.values():
        return CallStatus.completed
    return status


def end_reason_of(reason: str | None) -> EndReason | None:
    if not reason:
        return None
    if reason.startswith("error"):
        return "error"
    return END_REASONS.get(reason, "other")


def _from_ms(value: int | None) -> datetime | None:
    if value is None:
        return None
    seconds, millis = divmod(value, 1000)
    return datetime.fromtimestamp(seconds, UTC) + timedelta(milliseconds=millis)
