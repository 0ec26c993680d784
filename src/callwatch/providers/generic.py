"""The `generic` provider: callwatch's own event schema, signed with Standard Webhooks."""

import hashlib
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from callwatch import signatures
from callwatch.errors import InvalidInput, ProviderRejected, Unauthorized
from callwatch.model.events import TERMINAL_STATUSES, CallEvent, CallFields, CallStatus
from callwatch.model.records import CallDetails
from callwatch.outbound.http import get_json, mismatch
from callwatch.providers.base import WEBHOOK_SECRET, FetchContext, SourceConfig, WebhookRequest
from callwatch.validation import invalid, parse_body

_FIELD_NAMES = set(CallFields.model_fields)


class GenericData(BaseModel):
    model_config = ConfigDict(extra="allow")

    call_id: str = Field(min_length=1, max_length=200)
    status: CallStatus
    agent_id: str | None = None
    agent_name: str | None = None
    campaign_id: str | None = None
    direction: Literal["inbound", "outbound"] | None = None
    channel: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    customer_number: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("status", mode="before")
    @classmethod
    def _lenient_status(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower().replace("-", "_")
            return "canceled" if value == "cancelled" else value
        return value


class GenericEnvelope(BaseModel):
    type: Literal["call.status_changed", "call.completed"]
    timestamp: datetime
    data: GenericData


class GenericProvider:
    name = "generic"

    def prepare_credentials(self, credentials: dict[str, str]) -> str | None:
        if credentials.get(WEBHOOK_SECRET):
            return None
        credentials[WEBHOOK_SECRET] = signatures.new_secret()
        return credentials[WEBHOOK_SECRET]

    def authenticate(self, request: WebhookRequest, source: SourceConfig, now: float) -> str | None:
        current, *previous = source.webhook_secrets(now)
        try:
            return signatures.verify(current, request.headers, request.body, now)
        except Unauthorized:
            for secret in previous:  # during a rotation's overlap
                try:
                    return signatures.verify(secret, request.headers, request.body, now)
                except Unauthorized:
                    pass
            raise

    def parse(self, request: WebhookRequest, delivery_id: str | None) -> list[CallEvent]:
        envelope = parse_body(GenericEnvelope, request.body)
        data = envelope.data
        completed = envelope.type == "call.completed"
        if completed and data.status not in TERMINAL_STATUSES:
            raise InvalidInput(
                "data.status: call.completed needs a terminal status", field="data.status"
            )
        fields = CallFields(**data.model_dump(include=_FIELD_NAMES))
        detail = data.model_dump(mode="json", exclude={"call_id"}) if completed else None
        if detail is not None:
            # Without a detail_url this is the call's detail: what would fail assembly after the
            # 202 (`"duration_s": "NaN"`, a transcript that is not a list) is refused now.
            try:  # the values as parsed: a JSON dump has made -1e309 (-inf) a null
                CallDetails.model_validate(data.model_dump(exclude={"call_id"}))
            except ValidationError as exc:
                raise invalid(exc, "data.") from None
        dedupe = delivery_id or _stable_key(
            data.call_id, envelope.type, data.status, envelope.timestamp
        )
        return [
            CallEvent(
                provider_call_id=data.call_id,
                type=envelope.type,
                status=data.status,
                at=envelope.timestamp,
                terminal=completed or data.status in TERMINAL_STATUSES,
                fields=fields,
                detail=detail,
                dedupe_key=dedupe,
            )
        ]

    def fetch(self, client: httpx.Client, source: SourceConfig, call: FetchContext) -> CallDetails:
        template = source.settings.get("detail_url")
        if template:
            url = template.replace("{call_id}", quote(call.provider_call_id, safe=""))
            auth = source.credentials.get("api_key")
            headers = {"authorization": f"Bearer {auth}"} if auth else None
            payload = get_json(client, url, headers)
        elif call.completion is not None:
            payload = call.completion
        else:
            raise ProviderRejected("no detail_url configured and no completion data received")
        try:
            return CallDetails.model_validate(payload)
        except ValidationError as exc:
            raise mismatch("detail response", exc) from None


def _stable_key(call_id: str, event_type: str, status: str, at: datetime) -> str:
    text = f"{call_id}|{event_type}|{status}|{at.isoformat()}"
    return "h:" + hashlib.sha256(text.encode()).hexdigest()[:40]
