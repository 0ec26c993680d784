"""Smallest.ai Atoms: pre-/post-conversation and analytics webhooks, `GET /conversation/{id}`."""

import hashlib
import hmac
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callwatch.errors import InvalidInput, ProviderRejected, Unauthorized
from callwatch.model.endings import UNANSWERED
from callwatch.model.events import TERMINAL_STATUSES, CallEvent, CallFields, CallStatus
from callwatch.model.records import (
    Analysis,
    CallDetails,
    Cost,
    EndReason,
    Latency,
    LatencySamples,
    Recording,
    Stats,
    Utterance,
)
from callwatch.outbound.http import get_json, mismatch
from callwatch.providers.base import WEBHOOK_SECRET, FetchContext, SourceConfig, WebhookRequest
from callwatch.validation import parse_body

API_BASE = "https://api.smallest.ai/atoms/v1"

# Webhooks say `no-answer`, the REST API `no_answer` and `cancelled`; both are accepted.
STATUSES = {
    "completed": CallStatus.completed,
    "processing": CallStatus.completed,  # the call is over; the platform is post-processing
    "no_answer": CallStatus.no_answer,
    "busy": CallStatus.busy,
    "failed": CallStatus.failed,
    "canceled": CallStatus.canceled,
    "cancelled": CallStatus.canceled,
    "in_progress": CallStatus.in_progress,
    "active": CallStatus.in_progress,
    "pending": CallStatus.queued,
    "in_queue": CallStatus.queued,
}
END_REASONS: dict[str, EndReason] = {
    "user_hangup": "user_hangup",
    "agent_hangup": "agent_hangup",
    "timeout": "timeout",
    "dial_no_answer": "no_answer",
}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class CallData(_Lenient):
    fromNumber: str | None = None
    toNumber: str | None = None
    callDuration: float | None = None
    callStatus: str | None = None
    callDirection: str | None = None
    answerTime: datetime | None = None
    endTime: datetime | None = None


class WebhookTurn(_Lenient):
    role: str
    content: str = ""
    timestamp: datetime | None = None


class Metadata(_Lenient):
    callId: str = Field(min_length=1, max_length=200)
    eventType: str | None = None
    agentId: str | None = None
    conversationType: str | None = None
    fromPhone: str | None = None
    toPhone: str | None = None
    recordingUrl: str | None = None
    callData: CallData | None = None
    transcript: list[WebhookTurn] | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    analytics: dict[str, Any] | None = None


class Envelope(_Lenient):
    event: str = Field(min_length=1)
    id: str | None = None
    metadata: Metadata

    @property
    def kind(self) -> str:
        return self.metadata.eventType or self.event.rsplit(".", 1)[-1]


def status_of(value: str | None) -> CallStatus | None:
    if value is None:
        return None
    return STATUSES.get(value.strip().lower().replace("-", "_"))


def direction_of(value: str | None) -> str | None:
    text = (value or "").lower()
    if "inbound" in text:
        return "inbound"
    if "outbound" in text:
        return "outbound"
    return None


class AtomsProvider:
    name = "atoms"

    def prepare_credentials(self, credentials: dict[str, str]) -> str | None:
        if not credentials.get(WEBHOOK_SECRET):
            raise InvalidInput(
                "credentials.webhook_secret: required, the webhook's secret from Atoms "
                "(`decryptedSecretKey` of GET /webhook; `signing_secret` is an alias)",
                field="credentials.webhook_secret",
            )
        return None

    def authenticate(self, request: WebhookRequest, source: SourceConfig, now: float) -> str | None:
        given = request.headers.get("x-signature")
        if not given:
            raise Unauthorized("missing X-Signature header")
        secret = source.credentials[WEBHOOK_SECRET].encode()
        expected = hmac.new(secret, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.strip().lower().encode(), expected.encode()):
            raise Unauthorized("X-Signature does not match the body")
        return None  # the delivery id is in the body: parse takes it from there

    def parse(self, request: WebhookRequest, delivery_id: str | None) -> list[CallEvent]:
        envelope = parse_body(Envelope, request.body)
        meta = envelope.metadata
        data = meta.callData or CallData()
        received = request.received_at
        fields = CallFields(
            agent_id=meta.agentId,
            direction=direction_of(data.callDirection or meta.conversationType),
            channel="phone",
            from_number=data.fromNumber or meta.fromPhone,
            to_number=data.toNumber or meta.toPhone,
            metadata=meta.variables,
        )
        kind = envelope.kind
        base = {
            "provider_call_id": meta.callId,
            "type": kind,
            "fields": fields,
            "dedupe_key": envelope.id or f"{meta.callId}:{kind}",
        }
        if kind == "pre-conversation":
            return [CallEvent(status=CallStatus.in_progress, at=received, **base)]
        if kind == "post-conversation":
            status = status_of(data.callStatus) or CallStatus.completed
            if status not in TERMINAL_STATUSES:
                raise InvalidInput(
                    f"metadata.callData.callStatus: {data.callStatus!r} is not a final status",
                    field="metadata.callData.callStatus",
                )
            # The conversation API has no answer time; this webhook is the only one that says.
            answered = {"answered_at": data.answerTime.isoformat()} if data.answerTime else None
            return [
                CallEvent(
                    status=status,
                    at=data.endTime or received,
                    terminal=True,
                    detail=_completion(meta, data, status).model_dump(
                        mode="json", exclude_none=True
                    ),
                    enrich=answered,
                    **base,
                )
            ]
        if kind == "analytics-completed":
            analysis = _analysis(meta.analytics or {})
            enrich = {"analysis": analysis.model_dump(mode="json")} if analysis else None
            # It comes after the call, whenever analysis is done: its time is its arrival.
            return [CallEvent(status=None, at=received, enrich=enrich, **base)]
        raise InvalidInput(f"event: unknown Atoms event type {kind!r}", field="event")

    def fetch(self, client: httpx.Client, source: SourceConfig, call: FetchContext) -> CallDetails:
        api_key = source.credentials.get("api_key")
        if not api_key:
            if call.completion is None:
                raise ProviderRejected("no api_key credential and no post-conversation received")
            return CallDetails.model_validate(call.completion)
        base = str(source.settings.get("api_base_url") or API_BASE).rstrip("/")
        payload = get_json(
            client,
            f"{base}/conversation/{quote(call.provider_call_id, safe='')}",
            {"authorization": f"Bearer {api_key}"},
        )
        try:
            return conversation_details(payload.get("data", payload))
        except (ValidationError, AttributeError, TypeError, ValueError) as exc:
            raise mismatch("Atoms conversation", exc) from None


def _completion(meta: Metadata, data: CallData, status: CallStatus) -> CallDetails:
    """What the post-conversation webhook itself says, used when there is no API key."""
    turns = meta.transcript or []
    start = data.answerTime or (turns[0].timestamp if turns else None)
    return CallDetails(
        status=status,
        end_reason=UNANSWERED.get(status),
        answered_at=data.answerTime,
        ended_at=data.endTime,
        duration_s=data.callDuration,
        recording=Recording(url=meta.recordingUrl) if meta.recordingUrl else None,
        transcript=[
            Utterance(
                role="assistant" if turn.role == "agent" else "user",
                content=turn.content,
                start_s=(turn.timestamp - start).total_seconds()
                if turn.timestamp and start
                else None,
            )
            for turn in turns
            if turn.role in ("agent", "user")
        ]
        or None,
    )


def _analysis(analytics: dict[str, Any]) -> Analysis | None:
    if not analytics:
        return None
    data = {key: value for key, value in analytics.items() if key != "summary"}
    return Analysis(summary=analytics.get("summary"), data=data)


def conversation_details(data: dict[str, Any]) -> CallDetails:
    """`GET /conversation/{callId}`'s `data`, mapped onto the canonical details."""
    status = status_of(data.get("status"))
    recording = data.get("recordingUrl") or None
    transcript = [
        Utterance(
            role="assistant" if turn.get("role") == "agent" else "user",
            content=str(turn.get("content", "")),
            start_s=turn["timestamp"] / 1000
            if isinstance(turn.get("timestamp"), int | float)
            else None,
        )
        for turn in data.get("transcript") or []
        if turn.get("role") in ("agent", "user")
    ]
    metrics = data.get("turnLatencyMetrics") or {}
    samples = [float(value) for value in metrics.get("latencies") or []]
    summary = None
    if not samples and metrics.get("avgLatency") is not None:
        summary = Latency(
            turn=Stats(
                count=metrics.get("turns"),
                mean=metrics.get("avgLatency"),
                p50=metrics.get("medianLatency"),
                min=metrics.get("min"),
                max=metrics.get("max"),
            )
        )
    reason = data.get("disconnectionReason")
    end_reason = END_REASONS.get(str(reason)) if reason else None
    if end_reason is None and status is not None:
        end_reason = UNANSWERED.get(status)
    cost = data.get("callCost")
    return CallDetails(
        agent_id=data.get("agentId"),
        status=status,
        end_reason=end_reason,
        end_reason_raw=reason or data.get("callFailureReason"),
        direction=direction_of(data.get("type")),
        channel="web" if data.get("type") == "webcall" else "phone",
        from_number=data.get("from"),
        to_number=data.get("to"),
        duration_s=data.get("duration"),
        recording=Recording(url=recording, dual_url=data.get("recordingDualUrl") or None)
        if recording
        else Recording(status="pending"),
        transcript=transcript or None,
        latency=summary,
        latency_samples=LatencySamples(turn=samples) if samples else None,
        cost=Cost(total=float(cost), currency="credits") if cost is not None else None,
        analysis=_analysis(data.get("postCallAnalytics") or {}),
    )
