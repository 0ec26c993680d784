"""Telnyx Call Control v2: Ed25519-signed call events joined by session, `GET /v2/calls/{id}`.

Confirmed in Telnyx's docs and SDK models: the event envelope `{"data": {event_type, id,
occurred_at, payload}}`; `hangup_cause` (call_rejected, normal_clearing, originator_cancel, timeout,
time_limit, user_busy, not_found, no_answer, unspecified) and `hangup_source` (caller, callee,
unknown); `call_quality_stats.{inbound,outbound}` with string `mos`, `jitter_max_variance`,
`packet_count`, `skip_packet_count`; the call.cost payload (`total_cost` string, `status`
success|error, `billed_duration_secs`, `cost_parts[]` of `call_part`, `cost`, `currency`); and
`GET /v2/calls/{call_control_id}` answering `{"data": {start_time, end_time, call_duration,
is_alive, …}}` for about ten minutes after the call, 422/404 after that. Not documented: the
cost event's `event_type` (integrators see `call.cost`; any event whose payload has
`total_cost` or `cost_parts` is read as one), the unit of `jitter_max_variance` (read as ms),
and whether a hangup says its leg's direction (it does not in any sample: who hung up is
decided at fetch time with the direction `call.initiated` gave).
"""

import base64
import binascii
import hashlib
import math
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from callwatch.errors import (
    InvalidInput,
    ProviderRejected,
    Unauthorized,
)
from callwatch.events import CallEvent, CallFields, CallStatus
from callwatch.http import get_json
from callwatch.providers.base import FetchContext, SourceConfig, WebhookRequest
from callwatch.records import CallDetails, Cost, EndReason, Quality, Recording
from callwatch.validation import parse_body

API_BASE = "https://api.telnyx.com/v2"
TOLERANCE_S = 300
METADATA_KEY = "telnyx"
# Telnyx keeps a call's status about ten minutes after it ends, then answers 422 (or 404).
FORGOTTEN = frozenset({404, 410, 422})

PROGRESS = {
    "call.initiated": CallStatus.initiated,
    "call.answered": CallStatus.in_progress,
    "call.bridged": CallStatus.in_progress,
}
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
UNANSWERED: dict[CallStatus, EndReason] = {
    CallStatus.busy: "busy",
    CallStatus.no_answer: "no_answer",
    CallStatus.canceled: "other",
    CallStatus.failed: "error",
}
DIRECTIONS = {"incoming": "inbound", "outgoing": "outbound"}
# Who on a leg is the customer: the caller of an incoming leg, the callee of an outgoing one.
CUSTOMER_SIDE = {"inbound": "caller", "outbound": "callee"}
MACHINE_RESULTS = frozenset({"machine", "fax_detected"})
COST_PARTS = (("transcri", "stt"), ("speech", "tts"), ("speak", "tts"), ("inference", "llm"))


def _number(value: Any) -> Any:
    """Telnyx sends figures as strings ("4.50"); one that is no number is taken as unknown."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return value


Number = Annotated[float | None, BeforeValidator(_number)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class QualitySide(_Lenient):
    mos: Number = None
    jitter_max_variance: Number = None
    packet_count: Number = None
    skip_packet_count: Number = None


class QualityStats(_Lenient):
    inbound: QualitySide | None = None
    outbound: QualitySide | None = None


class Urls(_Lenient):
    mp3: str | None = None
    wav: str | None = None


class CostPart(_Lenient):
    call_part: str | None = None
    cost: Number = None
    currency: str | None = None


class Payload(_Lenient):
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


class Event(_Lenient):
    event_type: str = Field(min_length=1, max_length=100)
    id: str = Field(min_length=1, max_length=200)
    occurred_at: datetime | None = None
    payload: Payload


class Envelope(_Lenient):
    data: Event


class TelnyxProvider:
    name = "telnyx"

    def prepare_credentials(self, credentials: dict[str, str]) -> str | None:
        """`public_key` is the account's; a `private_key` (a sender of our own, such as the
        simulator) gives it when it is missing, and must match it when both are given."""
        private = credentials.get("private_key")
        derived = public_key_text(signing_key(private)) if private else None
        given = credentials.get("public_key")
        if not given:
            if derived is None:
                raise InvalidInput(
                    "credentials.public_key: required, the account's Ed25519 public key "
                    "(Mission Control → Keys & Credentials → Public Key)",
                    field="credentials.public_key",
                )
            credentials["public_key"] = derived
            return None
        _public_key(given)
        if derived is not None and derived != given.strip():
            raise InvalidInput(
                "credentials.private_key: does not belong to credentials.public_key",
                field="credentials.private_key",
            )
        return None

    def authenticate(self, request: WebhookRequest, source: SourceConfig, now: float) -> str | None:
        signature = request.headers.get("telnyx-signature-ed25519")
        stamp = request.headers.get("telnyx-timestamp")
        if not signature:
            raise Unauthorized("missing telnyx-signature-ed25519 header")
        if not stamp:
            raise Unauthorized("missing telnyx-timestamp header")
        try:
            sent = int(stamp.strip())
        except ValueError:
            raise Unauthorized("telnyx-timestamp is not unix seconds") from None
        if abs(now - sent) > TOLERANCE_S:
            raise Unauthorized(f"telnyx-timestamp is more than {TOLERANCE_S} s from now")
        try:
            raw = base64.b64decode(signature.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise Unauthorized("telnyx-signature-ed25519 is not base64") from None
        key = _public_key(source.credentials.get("public_key") or "")
        try:
            key.verify(raw, stamp.strip().encode() + b"|" + request.body)
        except InvalidSignature:
            raise Unauthorized("telnyx-signature-ed25519 does not match the body") from None
        return None  # the event id is in the body: parse takes it from there

    def parse(self, request: WebhookRequest, delivery_id: str | None) -> list[CallEvent]:
        event = parse_body(Envelope, request.body).data
        payload = event.payload
        if not payload.call_session_id:
            raise InvalidInput(
                "data.payload.call_session_id: a Telnyx call event names its call session",
                field="data.payload.call_session_id",
            )
        kind = event.event_type
        at = event.occurred_at or request.received_at
        base: dict[str, Any] = {
            "provider_call_id": payload.call_session_id,
            "type": kind,
            "at": at,
            "fields": _fields(payload),
            "dedupe_key": event.id,
        }
        if kind == "call.hangup":
            said = hangup_details(payload, at)
            detail = said.model_dump(mode="json", exclude_none=True)
            return [CallEvent(status=said.status, terminal=True, detail=detail, **base)]
        return [CallEvent(status=PROGRESS.get(kind), enrich=_enrichment(kind, payload, at), **base)]

    def fetch(self, client: httpx.Client, source: SourceConfig, call: FetchContext) -> CallDetails:
        """The call's status from the API while Telnyx still has it, over the hangup's own
        details; once Telnyx has forgotten the call, what the events said."""
        if call.completion is None:
            raise ProviderRejected("no call.hangup received for this call session")
        completion = with_direction(
            CallDetails.model_validate(call.completion), call.fields.direction
        )
        api_key = source.credentials.get("api_key")
        control_id = ((completion.metadata or {}).get(METADATA_KEY) or {}).get("call_control_id")
        if not api_key or not control_id:
            return completion
        base = str(source.settings.get("api_base_url") or API_BASE).rstrip("/")
        url = f"{base}/calls/{quote(str(control_id), safe=':')}"
        found = get_json(client, url, {"authorization": f"Bearer {api_key}"}, absent=FORGOTTEN)
        if found is None:
            return completion
        try:
            return filled(call_status_details(found), completion)
        except (ValidationError, AttributeError, TypeError, ValueError) as exc:
            raise ProviderRejected(f"Telnyx call status does not match its schema: {exc}") from None


def signing_key(text: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from base64 of its 32-byte seed, or from any other text (its
    SHA-256 is the seed): the simulator signs with it, as Telnyx signs with the account's."""
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        seed = hashlib.sha256(text.encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The public half as Telnyx shows an account's key: base64 of its 32 raw bytes."""
    return base64.b64encode(key.public_key().public_bytes_raw()).decode()


def _public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "credentials.public_key: not base64 of a 32-byte Ed25519 public key",
            field="credentials.public_key",
        ) from None


def _fields(payload: Payload) -> CallFields:
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
    side = (source or "").lower()
    if side not in ("caller", "callee") or direction not in CUSTOMER_SIDE:
        return None
    return "user_hangup" if side == CUSTOMER_SIDE[direction] else "agent_hangup"


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


def _enrichment(kind: str, payload: Payload, at: datetime) -> dict[str, Any] | None:
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
            parts.setdefault(_component(part.call_part), []).append(part.cost)
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


def _component(call_part: str | None) -> str:
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
