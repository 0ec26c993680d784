"""Bolna's execution object mapped onto call details (pure)."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeGuard

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from callwatch.model.endings import UNANSWERED, hung_up_by
from callwatch.model.events import CallFields, CallStatus
from callwatch.model.records import (
    Analysis,
    CallDetails,
    Cost,
    EndReason,
    Latency,
    LatencySamples,
    Recording,
    Utterance,
)

METADATA_KEY = "bolna"


CURRENCY = "USD"  # Bolna bills in US cents


STATUSES = {
    "scheduled": CallStatus.queued,
    "queued": CallStatus.queued,
    "rescheduled": CallStatus.queued,
    "initiated": CallStatus.initiated,
    "ringing": CallStatus.ringing,
    "in-progress": CallStatus.in_progress,
    # The line dropped after an answer; assembly starts here, `completed` enriches later.
    "call-disconnected": CallStatus.completed,
    "completed": CallStatus.completed,
    "busy": CallStatus.busy,
    "no-answer": CallStatus.no_answer,
    "balance-low": CallStatus.failed,  # never placed: the account ran out of balance
    "canceled": CallStatus.canceled,
    "stopped": CallStatus.canceled,
    "failed": CallStatus.failed,
    "error": CallStatus.failed,
}


# Statuses after which the execution's figures are final.
FINAL = frozenset(
    {"completed", "busy", "no-answer", "balance-low", "canceled", "stopped", "failed", "error"}
)


# A `completed` call with no conversation: how it ended, from the words of its hangup reason.
NOT_ANSWERED = (
    ("busy", CallStatus.busy),
    ("reject", CallStatus.busy),
    ("decline", CallStatus.busy),
    ("cancel", CallStatus.canceled),
    ("fail", CallStatus.failed),
    ("error", CallStatus.failed),
)


BOLNA_REASONS: dict[str, EndReason] = {
    "inactivity_timeout": "timeout",
    "llm_prompted_hangup": "agent_hangup",
}


HANGUP_BY: dict[str, EndReason] = {
    "api request": "agent_hangup",
    "carrier": "other",
    "plivo": "other",
    "twilio": "other",
    "error": "error",
}


ROLES: dict[str, Literal["assistant", "user"]] = {
    "assistant": "assistant",
    "agent": "assistant",
    "bot": "assistant",
    "user": "user",
    "customer": "user",
    "human": "user",
}


TURN = re.compile(r"^\s*(assistant|agent|bot|user|customer|human)\s*:\s?(.*)$", re.IGNORECASE)


STAGE_KEYS = {
    "stt": ("audio_to_text_latency", "latency"),
    "llm": ("time_to_first_token", "ttft", "first_token_latency", "latency"),
    "tts": ("time_to_first_byte", "time_to_first_chunk", "ttfb", "first_chunk_latency", "latency"),
}


STAGES = {"stt": "transcriber", "llm": "llm", "tts": "synthesizer"}


def as_text(value: Any) -> Any:
    """Execution ids were integers in older payloads, uuids now: both kept as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str | None, BeforeValidator(as_text)]


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Telephony(Lenient):
    duration: float | None = None
    to_number: Text = None
    from_number: Text = None
    recording_url: str | None = None
    provider_call_id: str | None = None
    provider: str | None = None
    call_type: str | None = None
    hangup_by: str | None = None
    hangup_reason: str | None = None
    hangup_provider_code: Text = None


class CostBreakdown(Lenient):
    llm: float | None = None
    network: float | None = None
    platform: float | None = None
    synthesizer: float | None = None
    transcriber: float | None = None


class Execution(Lenient):
    id: Annotated[str, BeforeValidator(as_text)] = Field(min_length=1, max_length=200)
    agent_id: Text = None
    batch_id: Text = None
    status: str = Field(min_length=1, max_length=50)
    error_message: str | None = None
    conversation_duration: float | None = None
    conversation_time: float | None = None
    total_cost: float | None = None
    cost_breakdown: CostBreakdown | None = None
    transcript: str | None = None
    summary: str | None = None
    extracted_data: dict[str, Any] | None = None
    answered_by_voice_mail: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    telephony_data: Telephony | None = None
    transfer_call_data: dict[str, Any] | None = None
    latency_data: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def duration_s(self) -> float | None:
        given = self.conversation_duration
        return given if given is not None else self.conversation_time

    @property
    def direction(self) -> str | None:
        kind = ((self.telephony_data.call_type if self.telephony_data else None) or "").lower()
        return kind if kind in ("inbound", "outbound") else None


def status_of(execution: Execution) -> CallStatus | None:
    """Bolna's status, except that a `completed` call without a conversation was not
    answered: busy, canceled or failed when its hangup reason says so, else no answer."""
    status = STATUSES.get(execution.status)
    if execution.status != "completed" or not _unanswered(execution):
        return status
    telephony = execution.telephony_data or Telephony()
    words = (telephony.hangup_reason or "").lower()
    return next((found for word, found in NOT_ANSWERED if word in words), CallStatus.no_answer)


def _unanswered(execution: Execution) -> bool:
    return execution.duration_s == 0 and not execution.answered_by_voice_mail


def fields_of(execution: Execution) -> CallFields:
    telephony = execution.telephony_data
    return CallFields(
        agent_id=execution.agent_id,
        campaign_id=execution.batch_id,
        direction=execution.direction,
        channel="phone" if telephony else None,
        from_number=telephony.from_number if telephony else None,
        to_number=telephony.to_number if telephony else None,
    )


def end_reason_of(execution: Execution, status: CallStatus | None) -> EndReason | None:
    """Voicemail first, unanswered calls by their status, then a transfer, Bolna's own reason,
    and last who hung up (the callee of an outbound call, the caller of an inbound one, is the
    customer)."""
    if execution.answered_by_voice_mail:
        return "voicemail"
    if status in UNANSWERED:
        return UNANSWERED[status]
    if execution.transfer_call_data:
        return "transferred"
    telephony = execution.telephony_data or Telephony()
    reason = BOLNA_REASONS.get((telephony.hangup_reason or "").strip().lower())
    if reason is not None:
        return reason
    by = (telephony.hangup_by or "").strip().lower()
    if by in ("callee", "caller"):
        return hung_up_by(by, execution.direction)
    return HANGUP_BY.get(by)


def details_of(execution: Execution) -> CallDetails:
    """An execution mapped onto the canonical details (pure). Before a final status its
    duration, cost, transcript and extracted data are placeholders (0, null), so left out; the
    recording is pending until `completed`, which has it or does not."""
    status = status_of(execution)
    telephony = execution.telephony_data or Telephony()
    final = execution.final
    kept = {
        "status": execution.status,
        "provider": telephony.provider,
        "provider_call_id": telephony.provider_call_id,
        "hangup_by": telephony.hangup_by,
        "hangup_provider_code": telephony.hangup_provider_code,
        "telephony_duration_s": telephony.duration if final else None,
        "error_message": execution.error_message,
    }
    return CallDetails(
        **fields_of(execution).model_dump(exclude_none=True, exclude={"metadata"}),
        status=status,
        end_reason=end_reason_of(execution, status),
        end_reason_raw=telephony.hangup_reason or execution.error_message,
        created_at=execution.created_at,
        duration_s=execution.duration_s if final else None,
        recording=_recording(execution),
        transcript=transcript_of(execution.transcript) if final else None,
        latency=_latency(execution.latency_data) if final else None,
        latency_samples=_samples(execution.latency_data) if final else None,
        cost=cost_of(execution) if final else None,
        analysis=_analysis(execution) if final else None,
        metadata={METADATA_KEY: {k: v for k, v in kept.items() if v is not None}},
    )


def _recording(execution: Execution) -> Recording | None:
    if execution.status == "completed":
        url = execution.telephony_data.recording_url if execution.telephony_data else None
        if not url:
            return Recording(status="missing")
        return Recording(status="available", url=url, available_at=execution.updated_at)
    if execution.final:
        return None  # never answered: the assembly says `none`
    return Recording(status="pending")


def transcript_of(text: str | None) -> list[Utterance] | None:
    """ "assistant: …\\nuser: …" as utterances; a line without a speaker continues the last."""
    turns: list[Utterance] = []
    for line in (text or "").splitlines():
        found = TURN.match(line)
        if found:
            role = ROLES[found.group(1).lower()]
            turns.append(Utterance(role=role, content=found.group(2).strip()))
        elif turns and line.strip():
            last = turns[-1]
            turns[-1] = last.model_copy(update={"content": f"{last.content}\n{line.strip()}"})
    return turns or None


def cost_of(execution: Execution) -> Cost | None:
    """Cents to dollars; network is the telephony part."""
    parts = execution.cost_breakdown
    if execution.total_cost is None and parts is None:
        return None
    given = parts or CostBreakdown()
    return Cost(
        total=_dollars(execution.total_cost),
        currency=CURRENCY,
        llm=_dollars(given.llm),
        stt=_dollars(given.transcriber),
        tts=_dollars(given.synthesizer),
        telephony=_dollars(given.network),
        platform=_dollars(given.platform),
    )


def _dollars(cents: float | None) -> float | None:
    return round(cents / 100, 6) if cents is not None else None


def _analysis(execution: Execution) -> Analysis | None:
    data = execution.extracted_data or {}
    if not data and not execution.summary:
        return None
    return Analysis(summary=execution.summary, data=data)


def _latency(data: dict[str, Any] | None) -> Latency | None:
    first_audio = (data or {}).get("time_to_first_audio")
    if not _is_number(first_audio):
        return None
    return Latency(time_to_first_word_ms=round(float(first_audio), 2))


def _samples(data: dict[str, Any] | None) -> LatencySamples | None:
    """One sample per turn and stage: the turn's last (most refined) entry."""
    found = {
        stage: _stage_samples((data or {}).get(component), STAGE_KEYS[stage])
        for stage, component in STAGES.items()
    }
    if not any(found.values()):
        return None
    return LatencySamples(**found)


def _stage_samples(stage: Any, keys: tuple[str, ...]) -> list[float]:
    if not isinstance(stage, dict):
        return []
    samples = []
    for turn in stage.get("turns") or []:
        entries = turn.get("turn_latency") if isinstance(turn, dict) else None
        last = entries[-1] if isinstance(entries, list) and entries else turn
        if not isinstance(last, dict):
            continue
        value = next((last[key] for key in keys if _is_number(last.get(key))), None)
        if value is not None:
            samples.append(round(float(value), 3))
    return samples


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
