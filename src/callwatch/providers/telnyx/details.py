"""Telnyx's call events and call status mapped onto call details (pure)."""

import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from callwatch.model.endings import UNANSWERED, hung_up_by
from callwatch.model.events import CallFields, CallStatus
from callwatch.model.records import CallDetails, Cost, EndReason, Quality, Recording

METADATA_KEY = "telnyx"


CAUSES = {
    "normal_clearing": CallStatus.completed,
    "time_limit": CallStatus.completed,
    "user_busy": CallStatus.busy,
    "call_rejected": CallStatus.busy,  # declined by the callee, as carriers report it
    "no_answer": CallStatus.no_answer,
    "timeout": CallStatus.no_answer,  # the dial's ring timeout ran out
    "originator_cancel": CallStatus.canceled,
    "not_found": CallStatus.failed,
}


# An `unspecified` cause is read from the SIP response, when there is one.
SIP_CODES = {
    "486": CallStatus.busy,
    "600": CallStatus.busy,
    "603": CallStatus.busy,
    "408": CallStatus.no_answer,
    "480": CallStatus.no_answer,
    "487": CallStatus.canceled,
}


DIRECTIONS = {"incoming": "inbound", "outgoing": "outbound"}


# Who on a leg is the customer: the caller of an incoming leg, the callee of an outgoing one.


MACHINE_RESULTS = frozenset({"machine", "fax_detected"})


COST_PARTS = (("transcri", "stt"), ("speech", "tts"), ("speak", "tts"), ("inference", "llm"))


def lenient_number(value: Any) -> Any:
    """Telnyx sends figures as strings ("4.50"); one that is no number is taken as unknown."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return value


Number = Annotated[float | None, BeforeValidator(lenient_number)]


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class QualitySide(Lenient):
    mos: Number = None
    jitter_max_variance: Number = None
    packet_count: Number = None
    skip_packet_count: Number = None


class QualityStats(Lenient):
    inbound: QualitySide | None = None
    outbound: QualitySide | None = None


class Urls(Lenient):
    mp3: str | None = None
    wav: str | None = None


class CostPart(Lenient):
    call_part: str | None = None
    cost: Number = None
    currency: str | None = None


class Payload(Lenient):
    call_session_id: str | None = Field(None, max_length=200)
    call_control_id: str | None = Field(None, max_length=400)
    call_leg_id: str | None = None
    connection_id: str | None = None
    direction: str | None = None
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    hangup_cause: str | None = None
    hangup_source: str | None = None
    sip_hangup_cause: str | None = None
    call_quality_stats: QualityStats | None = None
    recording_urls: Urls | None = None
    public_recording_urls: Urls | None = None
    channels: str | None = None
    total_cost: Number = None
    billed_duration_secs: Number = None
    cost_parts: list[CostPart] | None = None
    currency: str | None = None
    status: str | None = None
    result: str | None = None

    @property
    def is_cost(self) -> bool:
        return self.total_cost is not None or self.cost_parts is not None


def fields_of(payload: Payload) -> CallFields:
    return CallFields(
        direction=DIRECTIONS.get((payload.direction or "").lower()),
        channel="phone",
        from_number=payload.from_,
        to_number=payload.to,
    )


def status_of(cause: str | None, sip_code: str | None) -> CallStatus:
    """How a leg ended; an unknown or `unspecified` cause is read from the SIP code if it is an
    error, else the call is taken as completed."""
    found = CAUSES.get((cause or "").lower())
    if found is not None:
        return found
    code = (sip_code or "").strip()
    if code in SIP_CODES:
        return SIP_CODES[code]
    if code[:1] in ("4", "5", "6"):
        return CallStatus.failed
    return CallStatus.completed


def end_reason_of(
    status: CallStatus, cause: str | None, source: str | None, direction: str | None
) -> EndReason | None:
    """Why the call ended. Who hung up is only known with the leg's direction (the hangup
    itself does not carry it): the customer is the caller of an inbound leg, the callee of an
    outbound one."""
    if status in UNANSWERED:
        return UNANSWERED[status]
    if (cause or "").lower() == "time_limit":
        return "timeout"
    return hung_up_by((source or "").lower(), direction)


def quality_of(stats: QualityStats | None) -> Quality | None:
    """The inbound side (the audio Telnyx received from the far end, the only side it scores
    with a MOS); the outbound side when inbound has no figures. Loss is skipped / all packets."""
    sides = [side for side in (stats.inbound, stats.outbound) if side] if stats else []
    side = next((s for s in sides if s.mos is not None or s.packet_count), None)
    if side is None:
        return None
    loss = None
    if side.packet_count and side.skip_packet_count is not None:
        loss = round(side.skip_packet_count / side.packet_count * 100, 3)
    return Quality(mos=side.mos, jitter_ms=side.jitter_max_variance, packet_loss_pct=loss)


def hangup_details(payload: Payload, at: datetime) -> CallDetails:
    """What a `call.hangup` says: the completion used when the API no longer knows the call."""
    status = status_of(payload.hangup_cause, payload.sip_hangup_cause)
    direction = DIRECTIONS.get((payload.direction or "").lower())
    kept = {
        "call_control_id": payload.call_control_id,
        "call_leg_id": payload.call_leg_id,
        "connection_id": payload.connection_id,
        "hangup_source": payload.hangup_source,
        "sip_hangup_cause": payload.sip_hangup_cause,
    }
    return CallDetails(
        status=status,
        end_reason=end_reason_of(status, payload.hangup_cause, payload.hangup_source, direction),
        end_reason_raw=payload.hangup_cause,
        initiated_at=payload.start_time,
        ended_at=payload.end_time or at,
        quality=quality_of(payload.call_quality_stats),
        metadata={METADATA_KEY: {k: v for k, v in kept.items() if v is not None}},
    )


def enrichment_of(kind: str, payload: Payload, at: datetime) -> dict[str, Any] | None:
    """What a non-lifecycle event adds to the record, also after it is assembled."""
    if kind == "call.recording.saved":
        return {"recording": recording_of(payload, at).model_dump(mode="json", exclude_none=True)}
    if kind == "call.recording.error":
        return {"recording": {"status": "missing"}}
    if kind.startswith("call.machine") and (payload.result or "").lower() in MACHINE_RESULTS:
        return {"end_reason": "voicemail"}
    if kind == "call.cost" or payload.is_cost:
        return cost_enrichment(payload)
    return None


def recording_of(payload: Payload, at: datetime) -> Recording:
    """The public URL when the recording is public, else the pre-signed one (it expires); mp3
    first. A dual-channel file is also the record's `dual_url`."""
    url = next(
        (
            link
            for urls in (payload.public_recording_urls, payload.recording_urls)
            if urls
            for link in (urls.mp3, urls.wav)
            if link
        ),
        None,
    )
    if url is None:
        return Recording(status="missing")
    dual = url if (payload.channels or "").lower() == "dual" else None
    return Recording(status="available", url=url, dual_url=dual, available_at=at)


def cost_enrichment(payload: Payload) -> dict[str, Any] | None:
    """The cost event's figures in its currency; one whose calculation failed adds nothing."""
    if (payload.status or "success").lower() != "success":
        return None
    parts: dict[str, list[float]] = {}
    for part in payload.cost_parts or []:
        if part.cost is not None:
            parts.setdefault(component_of(part.call_part), []).append(part.cost)
    currency = payload.currency or next(
        (part.currency for part in payload.cost_parts or [] if part.currency), None
    )
    cost = Cost(
        total=payload.total_cost,
        currency=currency.upper() if currency else None,
        **{name: round(math.fsum(values), 6) for name, values in parts.items()},
    )
    enrich: dict[str, Any] = {"cost": cost.model_dump(mode="json", exclude_none=True)}
    if payload.billed_duration_secs is not None:
        enrich["billed_duration_s"] = payload.billed_duration_secs
    return enrich


def component_of(call_part: str | None) -> str:
    """Transcription, speech and inference parts by name; call control, SIP trunking, recording
    and any other part are telephony."""
    name = (call_part or "").lower()
    return next((component for word, component in COST_PARTS if word in name), "telephony")


def with_direction(details: CallDetails, direction: str | None) -> CallDetails:
    """Who hung up, once the call's direction (from call.initiated) is known."""
    if details.end_reason is not None or details.status is None:
        return details
    kept = (details.metadata or {}).get(METADATA_KEY) or {}
    reason = end_reason_of(
        details.status, details.end_reason_raw, kept.get("hangup_source"), direction
    )
    return details.model_copy(update={"end_reason": reason})


def call_status_details(found: dict[str, Any]) -> CallDetails:
    """`GET /calls/{call_control_id}`: when the leg started and ended, and its duration."""
    data = found.get("data", found)
    duration = data.get("call_duration")
    return CallDetails(
        initiated_at=data.get("start_time"),
        ended_at=data.get("end_time"),
        duration_s=float(duration) if duration is not None else None,
    )


def filled(fetched: CallDetails, completion: CallDetails) -> CallDetails:
    """The API where it says something, the hangup's details elsewhere."""
    return CallDetails.model_validate(
        {**completion.model_dump(exclude_none=True), **fetched.model_dump(exclude_none=True)}
    )
