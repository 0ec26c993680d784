"""The Origins/Dialflo call object mapped onto call details (pure), read leniently."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

from callwatch.model.endings import UNANSWERED, hung_up_by
from callwatch.model.events import CallStatus
from callwatch.model.records import (
    Analysis,
    CallDetails,
    EndReason,
    LatencySamples,
    Recording,
    Utterance,
)

METADATA_KEY = "origins"


STATUSES = {
    "ANSWERED": CallStatus.completed,
    "COMPLETED": CallStatus.completed,
    "FAILED": CallStatus.failed,
    "NO_ANSWER": CallStatus.no_answer,  # Dialflo's call_details lists NO_ANSWER and BUSY too
    "BUSY": CallStatus.busy,
    "CANCELED": CallStatus.canceled,
    "CANCELLED": CallStatus.canceled,
    "INITIATED": CallStatus.initiated,
    "QUEUED": CallStatus.queued,
}


# Plivo hangup cause names that say why a FAILED call was not answered (first match wins).
FAILED_CAUSES = (
    ("busy", CallStatus.busy),
    ("rejected", CallStatus.busy),  # declined by the callee, as Twilio reports it
    ("no answer", CallStatus.no_answer),
    ("ring timeout", CallStatus.no_answer),
    ("cancel", CallStatus.canceled),
)


# Plivo hangup sources (and plain words) naming one side of the call.
CUSTOMER_SOURCES = frozenset({"customer", "user"})


AGENT_SOURCES = frozenset({"agent", "bot", "assistant", "api request", "answer xml"})


CALLEE_SOURCES = frozenset({"callee", "call recipient", "recipient"})


OTHER_SOURCES: dict[str, EndReason] = {"error": "error", "plivo": "other", "carrier": "other"}


LATENCY_MS_KEYS = ("latency_ms", "ttfb_ms", "duration_ms", "latency", "ttfb", "duration")


LATENCY_S_KEYS = ("latency_s", "ttfb_s", "duration_s", "latency_seconds", "ttfb_seconds")


ROLE_KEYS = ("role", "speaker")


TEXT_KEYS = ("content", "text", "message", "transcript")


START_KEYS = ("start_s", "start", "start_time")


END_KEYS = ("end_s", "end", "end_time")


ROLES: dict[str, Literal["assistant", "user", "system", "tool"]] = {
    "assistant": "assistant",
    "agent": "assistant",
    "bot": "assistant",
    "ai": "assistant",
    "user": "user",
    "customer": "user",
    "human": "user",
    "system": "system",
    "tool": "tool",
    "function": "tool",
}


KEPT_IN_METADATA = (
    "task_id",
    "org_id",
    "recording_id",
    "call_triggered",
    "hangup_source",
    "call_context",
    "call_state_changes",
    "call_timeline",
    "tool_data",
    "audio_config",
)


def parse_time(value: Any) -> datetime | None:
    """A Plivo-style or ISO 8601 timestamp as aware UTC; without an offset it is UTC."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("not a timestamp like '2025-06-25 10:57:05+05:30'") from None
    else:
        raise ValueError("expected a timestamp string")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def as_text(value: Any) -> Any:
    """Ids and numbers the platform sends as integers or strings, kept as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def known_status(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().upper().replace("-", "_").replace(" ", "_")
        if value not in STATUSES:
            raise ValueError(f"unknown call status; expected one of {', '.join(STATUSES)}")
    return value


Timestamp = Annotated[datetime | None, BeforeValidator(parse_time)]


Text = Annotated[str | None, BeforeValidator(as_text)]


Status = Annotated[str | None, BeforeValidator(known_status)]


class CallObject(BaseModel):
    """The Origins/Dialflo call object (webhook body, `call_details`, `call_stats` items)."""

    model_config = ConfigDict(extra="allow")

    call_id: Text = None
    agent_id: Text = None
    call_agent_id: Text = None
    agent_name: str | None = None
    call_status: Status = None
    call_direction: str | None = None
    from_number: Text = None
    to_number: Text = None
    call_duration: float | None = None
    billed_duration: float | None = None
    initiation_time: Timestamp = None
    answer_time: Timestamp = None
    end_time: Timestamp = None
    hangup_cause_name: str | None = None
    hangup_source: str | None = None
    call_recording_url: str | None = None
    recording_id: Text = None
    task_id: Text = None
    org_id: Text = None
    call_triggered: bool | None = None
    stt_data: list[Any] | None = None
    llm_data: list[Any] | None = None
    tts_data: list[Any] | None = None
    call_transcription: list[Any] | None = None
    call_context: dict[str, Any] | None = None
    call_state_changes: list[Any] | None = None
    call_quality: dict[str, Any] | None = None
    call_insights: dict[str, Any] | None = None
    call_timeline: list[Any] | None = None
    tool_data: list[Any] | None = None
    audio_config: dict[str, Any] | None = None

    @property
    def status(self) -> CallStatus | None:
        return status_of(self.call_status, self.hangup_cause_name)

    @property
    def agent(self) -> str | None:
        return self.agent_id or self.call_agent_id


def status_of(call_status: str | None, hangup_cause: str | None) -> CallStatus | None:
    """ANSWERED → completed; FAILED → busy/no_answer/canceled when the hangup cause says so."""
    if call_status is None:
        return None
    status = STATUSES[call_status]
    if status is CallStatus.failed and hangup_cause:
        cause = hangup_cause.lower()
        return next((found for word, found in FAILED_CAUSES if word in cause), status)
    return status


def end_reason_of(call: CallObject, status: CallStatus | None) -> EndReason | None:
    """Who ended an answered call, from Plivo's hangup source; unanswered calls by status."""
    if status in UNANSWERED:
        return UNANSWERED[status]
    source = (call.hangup_source or "").strip().lower()
    direction = direction_of(call.call_direction)
    if source in CUSTOMER_SOURCES:
        return "user_hangup"
    if source in AGENT_SOURCES:
        return "agent_hangup"
    if source in CALLEE_SOURCES or source == "caller":
        return hung_up_by("callee" if source in CALLEE_SOURCES else "caller", direction)
    return OTHER_SOURCES.get(source)


def direction_of(value: str | None) -> str | None:
    text = (value or "").strip().lower()
    return text if text in ("inbound", "outbound") else None


def details_of(call: CallObject) -> CallDetails:
    """A call object mapped onto the canonical details (pure)."""
    status = call.status
    kept = {key: getattr(call, key) for key in KEPT_IN_METADATA if getattr(call, key) is not None}
    samples = LatencySamples(
        stt=_samples(call.stt_data), llm=_samples(call.llm_data), tts=_samples(call.tts_data)
    )
    return CallDetails(
        agent_id=call.agent,
        agent_name=call.agent_name,
        direction=direction_of(call.call_direction),
        channel="phone",
        from_number=call.from_number,
        to_number=call.to_number,
        status=status,
        end_reason=end_reason_of(call, status),
        end_reason_raw=call.hangup_cause_name or call.hangup_source,
        initiated_at=call.initiation_time,
        answered_at=call.answer_time,
        ended_at=call.end_time,
        duration_s=call.call_duration,
        billed_duration_s=call.billed_duration,
        recording=Recording(url=call.call_recording_url) if call.call_recording_url else None,
        transcript=_transcript(call.call_transcription, call.answer_time),
        latency_samples=samples if samples.stt or samples.llm or samples.tts else None,
        analysis=_analysis(call.call_insights, call.call_quality),
        metadata={METADATA_KEY: kept} if kept else None,
    )


def _samples(items: list[Any] | None) -> list[float]:
    return [ms for ms in (_sample_ms(item) for item in items or []) if ms is not None]


def _sample_ms(item: Any) -> float | None:
    """Stage data items are undocumented: the first number under a millisecond or a seconds
    key, or the item itself if it is a number (then milliseconds, as callwatch reports)."""
    if _is_number(item):
        return float(item)
    if not isinstance(item, dict):
        return None
    for key in LATENCY_MS_KEYS:
        if _is_number(item.get(key)):
            return float(item[key])
    for key in LATENCY_S_KEYS:
        if _is_number(item.get(key)):
            return round(float(item[key]) * 1000, 3)
    return None


def _transcript(items: list[Any] | None, answered: datetime | None) -> list[Utterance] | None:
    """Undocumented item shape: role, text and times under the first of the known keys."""
    turns = []
    for item in items or []:
        if not isinstance(item, dict):
            continue
        role = ROLES.get(str(_first(item, ROLE_KEYS) or "").strip().lower())
        if role is None:
            continue
        turns.append(
            Utterance(
                role=role,
                content=str(_first(item, TEXT_KEYS) or ""),
                start_s=_offset_s(_first(item, START_KEYS), answered),
                end_s=_offset_s(_first(item, END_KEYS), answered),
            )
        )
    return turns or None


def _first(item: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((item[key] for key in keys if item.get(key) is not None), None)


def _offset_s(value: Any, answered: datetime | None) -> float | None:
    """Seconds from the answer: numbers are that already; timestamps are placed against it."""
    if _is_number(value):
        return float(value)
    if isinstance(value, str) and answered is not None:
        try:
            moment = parse_time(value)
        except ValueError:
            return None
        return round((moment - answered).total_seconds(), 3) if moment else None
    return None


def _analysis(insights: dict[str, Any] | None, quality: dict[str, Any] | None) -> Analysis | None:
    data = {
        key: value
        for key, value in (("call_insights", insights), ("call_quality", quality))
        if value
    }
    if not data:
        return None
    summary = (insights or {}).get("summary")
    return Analysis(summary=summary if isinstance(summary, str) else None, data=data)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
