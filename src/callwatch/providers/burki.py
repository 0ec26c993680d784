"""Burki: Vapi-like status and end-of-call webhooks (or flat ones), unsigned; calls by SID."""

import hashlib
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callwatch.errors import InvalidInput, ProviderRejected
from callwatch.model.events import UNMATCHED_PREFIX, CallEvent, CallFields, CallStatus, NumberMatch
from callwatch.model.records import Analysis, CallDetails, Cost, EndReason, Recording, Utterance
from callwatch.outbound.http import get_json, mismatch
from callwatch.providers.base import FetchContext, SourceConfig, WebhookRequest
from callwatch.validation import parse_body

API_BASE = "https://api.burki.dev"

# `ended` is left to the end-of-call report, which carries what the call was.
UPDATE_STATUSES = {
    "scheduled": CallStatus.queued,
    "queued": CallStatus.queued,
    "ringing": CallStatus.ringing,
    "in-progress": CallStatus.in_progress,
    "forwarding": CallStatus.in_progress,
}
API_STATUSES = {
    "ongoing": CallStatus.in_progress,
    "completed": CallStatus.completed,
    "failed": CallStatus.failed,
}
# Flat webhooks (`{"event": …, "call_sid": …}`), as Burki's webhook-log docs list them.
FLAT_STATUSES = {"call_started": CallStatus.in_progress, "call_ended": CallStatus.completed}
# Burki reuses Vapi's vocabulary for why a call ended.
END_REASONS: dict[str, EndReason] = {
    "customer-ended-call": "user_hangup",
    "assistant-ended-call": "agent_hangup",
    "assistant-said-end-call-phrase": "agent_hangup",
    "assistant-forwarded-call": "transferred",
    "customer-did-not-answer": "no_answer",
    "customer-busy": "busy",
    "silence-timed-out": "timeout",
    "exceeded-max-duration": "timeout",
    "voicemail": "voicemail",
}
UNANSWERED = {"no_answer": CallStatus.no_answer, "busy": CallStatus.busy}
ROLES = {"bot": "assistant", "assistant": "assistant", "human": "user", "user": "user"}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Number(_Lenient):
    number: str | None = None


class CallRef(_Lenient):
    id: str | None = Field(None, max_length=200)
    phoneCallProviderId: str | None = Field(None, max_length=200)
    type: str | None = None
    customer: Number | None = None


class Message(_Lenient):
    role: str
    content: str | None = None
    message: str | None = None


class ReportAnalysis(_Lenient):
    summary: str | None = None
    structuredData: dict[str, Any] | None = None
    successEvaluation: Any = None


class Envelope(_Lenient):
    type: str = Field(min_length=1)
    status: str | None = None
    call: CallRef | None = None
    phoneNumber: Number | None = None
    customer: Number | None = None
    summary: str | None = None
    recordingUrl: str | None = None
    endedReason: str | None = None
    durationSeconds: float | None = None
    messages: list[Message] = Field(default_factory=list)
    analysis: ReportAnalysis | None = None


class Webhook(_Lenient):
    """Either shape Burki posts: `{"message": {...}}` or `{"event": …, "call_sid": …}`."""

    message: Envelope | None = None
    event: str | None = Field(None, min_length=1)
    call_sid: str | None = Field(None, min_length=1, max_length=200)
    timestamp: str | None = Field(None, max_length=64)  # part of the dedupe key


class BurkiProvider:
    name = "burki"

    def prepare_credentials(self, credentials: dict[str, str]) -> str | None:
        return None  # unsigned: the webhook token is the credential; api_key is optional

    def authenticate(self, request: WebhookRequest, source: SourceConfig, now: float) -> str | None:
        return None

    def parse(self, request: WebhookRequest, delivery_id: str | None) -> list[CallEvent]:
        webhook = parse_body(Webhook, request.body)
        if webhook.message is not None:
            return [_from_envelope(webhook.message, request)]
        if webhook.event and webhook.call_sid:
            return [_from_flat(webhook.event, webhook.call_sid, webhook.timestamp, request)]
        raise InvalidInput(
            "message: a Burki webhook has a `message` object, or `event` and `call_sid`",
            field="message",
        )

    def fetch(self, client: httpx.Client, source: SourceConfig, call: FetchContext) -> CallDetails:
        api_key = source.credentials.get("api_key")
        if not api_key or call.provider_call_id.startswith(UNMATCHED_PREFIX):
            if call.completion is None:
                raise ProviderRejected("no api_key credential and no end-of-call report received")
            return CallDetails.model_validate(call.completion)
        base = str(source.settings.get("api_base_url") or API_BASE).rstrip("/")
        url = f"{base}/api/v1/calls/sid/{quote(call.provider_call_id, safe='')}"
        headers = {"authorization": f"Bearer {api_key}"}
        found, recordings, transcripts = (
            get_json(client, url, headers),
            get_json(client, url + "/recordings", headers),
            # The flat webhooks carry no words: the API's final transcripts are the call's.
            get_json(client, url + "/transcripts", headers),
        )
        try:
            return call_details(found, recordings, transcripts)
        except (ValidationError, AttributeError, TypeError, ValueError) as exc:
            raise mismatch("Burki call", exc) from None


def _direction(call: CallRef | None) -> str:
    """Burki's calls are inbound unless they say otherwise (its API calls our side `to`)."""
    kind = (call.type if call else None) or ""
    return "outbound" if "outbound" in kind.lower() else "inbound"


def _fields(direction: str, ours: str | None, customer: str | None) -> CallFields:
    inbound = direction == "inbound"
    return CallFields(
        direction=direction,
        channel="phone",
        from_number=customer if inbound else ours,
        to_number=ours if inbound else customer,
        customer_number=customer,
    )


def _from_envelope(message: Envelope, request: WebhookRequest) -> CallEvent:
    call = message.call
    sid = (call.phoneCallProviderId or call.id) if call else None
    ours = message.phoneNumber.number if message.phoneNumber else None
    customer_ref = message.customer or (call.customer if call else None)
    customer = customer_ref.number if customer_ref else None
    fields = _fields(_direction(call), ours, customer)
    received = request.received_at
    if message.type == "status-update":
        if not sid:
            raise InvalidInput(
                "message.call.id: a status update names its call", field="message.call.id"
            )
        status = UPDATE_STATUSES.get((message.status or "").lower())
        return CallEvent(
            provider_call_id=sid,
            type="status-update",
            status=status,
            at=received,
            fields=fields,
            dedupe_key=f"{sid}:status-update:{message.status}",
        )
    if message.type == "end-of-call-report":
        if not sid and not (ours and customer):
            raise InvalidInput(
                "message.customer.number: an end-of-call report without a call id needs both "
                "numbers to find its call",
                field="message.customer.number",
            )
        end_reason = END_REASONS.get(message.endedReason or "")
        if end_reason is None and message.endedReason and "error" in message.endedReason:
            end_reason = "error"
        status = UNANSWERED.get(end_reason or "", CallStatus.completed)
        said = _report_details(message, end_reason)
        return CallEvent(
            provider_call_id=sid or "",
            type="end-of-call-report",
            status=status,
            at=received,
            terminal=True,
            fields=fields,
            detail=said.model_copy(
                update={
                    "status": status,
                    "duration_s": message.durationSeconds,
                    "ended_at": received,
                    "recording": Recording(url=message.recordingUrl)
                    if message.recordingUrl
                    else Recording(status="missing"),
                }
            ).model_dump(mode="json", exclude_none=True),
            enrich=said.model_dump(mode="json", exclude_none=True) or None,
            match=None
            if sid
            else NumberMatch(our_number=ours or "", customer_number=customer or ""),
            # Burki does not retry and sends no id: the same bytes twice are one delivery.
            dedupe_key="h:" + _digest(request.body),
        )
    raise InvalidInput(
        f"message.type: unknown Burki webhook type {message.type!r}", field="message.type"
    )


def _report_details(message: Envelope, end_reason: EndReason | None) -> CallDetails:
    """What only the end-of-call report says: why it ended, the words, the analysis."""
    transcript = [
        Utterance(role=ROLES[item.role], content=item.content or item.message or "")
        for item in message.messages
        if item.role in ROLES
    ]
    found = message.analysis
    summary = (found.summary if found else None) or message.summary
    data = (found.structuredData if found else None) or {}
    return CallDetails(
        end_reason=end_reason,
        end_reason_raw=message.endedReason,
        transcript=transcript or None,
        analysis=Analysis(summary=summary, data=data) if summary or data else None,
    )


def _from_flat(event: str, sid: str, timestamp: str | None, request: WebhookRequest) -> CallEvent:
    return CallEvent(
        provider_call_id=sid,
        type=event,
        status=FLAT_STATUSES.get(event),
        at=_moment(timestamp) or request.received_at,
        terminal=event == "call_ended",
        dedupe_key=f"{sid}:{event}:" + (timestamp or _digest(request.body)),
    )


def _moment(timestamp: str | None) -> datetime | None:
    """The flat webhook's own time (ISO 8601); None when it has none a reader can trust."""
    try:
        moment = datetime.fromisoformat(timestamp) if timestamp else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:40]


def call_details(found: dict[str, Any], recordings: Any, transcripts: Any = None) -> CallDetails:
    """`GET /api/v1/calls/sid/{sid}`, its `/recordings` and `/transcripts`, mapped onto the
    canonical details."""
    direction = "outbound" if found.get("direction") == "outbound" else "inbound"
    ours, customer = found.get("to_phone_number"), found.get("customer_phone_number")
    fields = _fields(direction, ours, customer)
    items = (
        recordings.get("items", recordings.get("recordings", []))
        if isinstance(recordings, dict)
        else recordings
    )
    done = [
        item
        for item in items or []
        if item.get("status") == "completed" and item.get("recording_url")
    ]
    mixed = [item for item in done if item.get("recording_type") in (None, "mixed", "full")]
    chosen = (mixed or done)[0] if done else None
    status = API_STATUSES.get(str(found.get("status")))
    assistant = found.get("assistant_id")
    return CallDetails(
        **fields.model_dump(exclude_none=True, exclude={"metadata"}),
        agent_id=str(assistant) if assistant is not None else None,
        agent_name=found.get("assistant_name"),
        status=status,
        answered_at=found.get("started_at"),
        ended_at=found.get("ended_at"),
        duration_s=found.get("duration"),
        recording=Recording(url=chosen["recording_url"]) if chosen else Recording(status="pending"),
        cost=_cost(found),
        transcript=_transcript(transcripts),
        metadata=found.get("call_meta") or None,
    )


def _transcript(items: Any) -> list[Utterance] | None:
    """`/transcripts`: the final segments in the order Burki keeps them (by creation), each
    timed in seconds from the start of the call."""
    said = [
        Utterance(
            role=ROLES[item["speaker"]],
            content=item.get("content") or "",
            start_s=item.get("segment_start"),
            end_s=item.get("segment_end"),
        )
        for item in items or []
        if item.get("speaker") in ROLES and item.get("is_final", True) is not False
    ]
    return said or None


def _cost(found: dict[str, Any]) -> Cost | None:
    parts = ("total_cost", "llm_cost", "tts_cost", "stt_cost", "telephony_cost")
    if all(found.get(part) is None for part in parts):
        return None  # still ongoing, or cost tracking is off
    return Cost(
        total=found.get("total_cost"),
        currency=found.get("cost_currency"),
        llm=found.get("llm_cost"),
        tts=found.get("tts_cost"),
        stt=found.get("stt_cost"),
        telephony=found.get("telephony_cost"),
    )
