"""Vapi: status-update and end-of-call-report messages, a secret or an HMAC, `GET /call/{id}`."""

import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field, ValidationError, field_validator

from callwatch.errors import InvalidInput, ProviderRejected
from callwatch.model.events import CallEvent
from callwatch.model.records import CallDetails, Recording
from callwatch.outbound.http import get_json, mismatch
from callwatch.providers.base import WEBHOOK_SECRET, FetchContext, SourceConfig, WebhookRequest
from callwatch.providers.vapi.auth import HEADER_NAME, verify
from callwatch.providers.vapi.call import (
    UPDATE_STATUSES,
    Lenient,
    VapiCall,
    call_fields,
    reason_fields,
    status_of,
)
from callwatch.providers.vapi.details import call_details
from callwatch.validation import MAX_EPOCH_MS, parse_body

API_BASE = "https://api.vapi.ai"
TIMELINE_TYPES = frozenset({"hang", "user-interrupted"})


class CallRef(Lenient):
    id: str = Field(min_length=1, max_length=200)


class Message(Lenient):
    type: str = Field(min_length=1, max_length=100)
    call: CallRef | None = None
    timestamp: float | datetime | None = None  # epoch ms (or seconds), or ISO 8601
    status: str | None = None
    endedReason: str | None = None

    @field_validator("timestamp")
    @classmethod
    def _a_datetime(cls, value: float | datetime | None) -> float | datetime | None:
        if isinstance(value, float) and not 0 <= value <= MAX_EPOCH_MS:
            raise ValueError("expected epoch milliseconds up to year 9999")
        return value


class Envelope(BaseModel):
    message: Message


class VapiProvider:
    name = "vapi"

    def prepare_credentials(self, credentials: dict[str, str]) -> str | None:
        if not credentials.get(WEBHOOK_SECRET) and not credentials.get("hmac_secret"):
            raise InvalidInput(
                "credentials.webhook_secret: required unless credentials.hmac_secret is given; "
                "the token of the server URL's Vapi credential (Bearer or X-Vapi-Secret; "
                "`secret` is an alias), or its HMAC secret",
                field="credentials.webhook_secret",
            )
        for name in ("hmac_header", "hmac_timestamp_header"):
            given = credentials.get(name)
            if given is not None and not HEADER_NAME.fullmatch(given):
                raise InvalidInput(
                    f"credentials.{name}: not an HTTP header name", field=f"credentials.{name}"
                )
        return None

    def authenticate(self, request: WebhookRequest, source: SourceConfig, now: float) -> str | None:
        verify(request, source.credentials, now)
        return None

    def parse(self, request: WebhookRequest, delivery_id: str | None) -> list[CallEvent]:
        envelope = parse_body(Envelope, request.body)
        message = envelope.message
        kind = message.type
        if kind not in ("status-update", "end-of-call-report", *TIMELINE_TYPES):
            raise InvalidInput(
                f"message.type: callwatch reads status-update, end-of-call-report, hang and "
                f"user-interrupted; drop {kind!r} from this server URL's serverMessages",
                field="message.type",
            )
        if message.call is None:
            raise InvalidInput(
                "message.call.id: a Vapi server message names its call", field="message.call.id"
            )
        call = _combined(message)
        at = _moment(message.timestamp) or request.received_at
        stamp = _stamp(message.timestamp) or hashlib.sha256(request.body).hexdigest()[:24]
        status = None
        terminal = False
        detail = enrich = None
        if kind == "status-update":
            raw = (message.status or "").lower()
            status = UPDATE_STATUSES.get(raw)
            if raw == "ended":
                reason = message.endedReason or call.endedReason
                status, terminal = status_of(reason), True
                detail = _dump(CallDetails(status=status, **reason_fields(reason)))
        elif kind == "end-of-call-report":
            said = call_details(call, final=True)
            status, terminal = said.status, True
            detail = _dump(said)
            # What the report says overrides the API's answer, also after assembly.
            enrich = _dump(said.model_copy(update={"status": None, "recording": _url_only(said)}))
        return [
            CallEvent(
                provider_call_id=message.call.id,
                type=kind,
                status=status,
                at=at,
                terminal=terminal,
                fields=call_fields(call),
                detail=detail,
                enrich=enrich,
                dedupe_key=f"{message.call.id}:{kind}:{message.status or ''}:{stamp}",
            )
        ]

    def fetch(self, client: httpx.Client, source: SourceConfig, call: FetchContext) -> CallDetails:
        api_key = source.credentials.get("api_key")
        if not api_key:
            if call.completion is None:
                raise ProviderRejected("no api_key credential and no end-of-call report received")
            return CallDetails.model_validate(call.completion)
        base = str(source.settings.get("api_base_url") or API_BASE).rstrip("/")
        url = f"{base}/call/{quote(call.provider_call_id, safe='')}"
        payload = get_json(client, url, {"authorization": f"Bearer {api_key}"})
        try:
            return call_details(VapiCall.model_validate(payload))
        except ValidationError as exc:
            raise mismatch("Vapi call", exc) from None


def _combined(message: Message) -> VapiCall:
    """The message's call with the message's own fields over it (a report repeats the Call's
    field names: endedReason, startedAt, artifact, analysis, cost, costs, customer, …)."""
    own = {
        key: value
        for key, value in message.model_dump().items()
        if key not in ("call", "type", "status", "timestamp") and value is not None
    }
    given = (message.call.model_dump() if message.call else {}) | own
    try:
        return VapiCall.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        field = "message." + (path if str(first["loc"][0]) in own else f"call.{path}")
        raise InvalidInput(f"{field}: {first['msg']}", field=field) from None


def _moment(value: float | datetime | None) -> datetime | None:
    """Vapi's `timestamp`: epoch milliseconds (seconds and ISO 8601 are read too)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)


def _stamp(value: float | datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else f"{value:.0f}"


def _url_only(details: CallDetails) -> Recording | None:
    """A report's recording only overrides the API's when it has a URL."""
    return details.recording if details.recording and details.recording.url else None


def _dump(details: CallDetails) -> dict[str, Any]:
    return details.model_dump(mode="json", exclude_none=True)
