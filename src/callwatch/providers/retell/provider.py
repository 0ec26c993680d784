"""Retell AI: `x-retell-signature` webhooks (call_started/ended/analyzed), `GET /v2/get-call/{id}`.

Confirmed in retell-sdk 6.2 (`retell/lib/webhook_auth.py`): the signature
`v=<ms>,d=<hex HMAC-SHA256(api key, body + v)>` and its 5-minute window, and the webhook event
names.
"""

import hashlib
import hmac
import json
import re
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callwatch.errors import InvalidInput, ProviderRejected, Unauthorized
from callwatch.model.events import CallEvent, CallFields, CallStatus
from callwatch.model.records import CallDetails
from callwatch.outbound.http import get_json, mismatch
from callwatch.providers.base import FetchContext, SourceConfig, WebhookRequest
from callwatch.providers.retell.call import RetellCall, final_status
from callwatch.providers.retell.details import call_details
from callwatch.validation import parse_body

API_BASE = "https://api.retellai.com"
TOLERANCE_MS = 5 * 60 * 1000  # the window retell-sdk's own verify allows, either way
SIGNATURE = re.compile(r"v=(\d{1,16}),d=([0-9a-fA-F]{64})")
FINAL_EVENTS = frozenset({"call_ended", "call_analyzed"})
# Opt-in events that only mark the timeline.
TIMELINE_EVENTS = frozenset(
    {
        "transcript_updated",
        "transfer_started",
        "transfer_bridged",
        "transfer_cancelled",
        "transfer_ended",
    }
)


class Webhook(BaseModel):
    model_config = ConfigDict(extra="allow")

    event: str = Field(min_length=1, max_length=100)
    call: RetellCall | None = None
    data: RetellCall | None = None  # the deprecated name of `call`


def sign(api_key: str, body: bytes, timestamp_ms: int) -> str:
    """`v=<ms>,d=<hex HMAC-SHA256(api key, body + str(ms))>`, as Retell signs."""
    digest = hmac.new(api_key.encode(), body + str(timestamp_ms).encode(), hashlib.sha256)
    return f"v={timestamp_ms},d={digest.hexdigest()}"


class RetellProvider:
    name = "retell"

    def prepare_credentials(self, credentials: dict[str, str]) -> str | None:
        if not credentials.get("api_key"):
            raise InvalidInput(
                "credentials.api_key: required, a Retell API key with the webhook badge "
                "(it signs the webhooks and reads GET /v2/get-call)",
                field="credentials.api_key",
            )
        return None

    def authenticate(self, request: WebhookRequest, source: SourceConfig, now: float) -> str | None:
        given = (request.headers.get("x-retell-signature") or "").strip()
        if not given:
            raise Unauthorized("missing x-retell-signature header")
        found = SIGNATURE.fullmatch(given)
        if found is None:
            raise Unauthorized("x-retell-signature is not `v=<unix ms>,d=<64 hex digits>`")
        stamp = int(found.group(1))
        if abs(now * 1000 - stamp) > TOLERANCE_MS:
            raise Unauthorized("x-retell-signature timestamp is more than 5 minutes away")
        api_key = source.credentials.get("api_key")
        if not api_key:
            raise Unauthorized("this source has no api_key credential to check signatures with")
        expected = sign(api_key, request.body, stamp)
        if not hmac.compare_digest(given.lower().encode(), expected.encode()):
            raise Unauthorized("x-retell-signature does not match the body")
        return None  # Retell sends no delivery id

    def parse(self, request: WebhookRequest, delivery_id: str | None) -> list[CallEvent]:
        webhook = parse_body(Webhook, request.body)
        call = webhook.call or webhook.data
        if call is None:
            raise InvalidInput("call: a Retell webhook carries the call object", field="call")
        kind, call_id, received = webhook.event, call.call_id, request.received_at
        fields = CallFields(
            agent_id=call.agent_id,
            agent_name=call.agent_name,
            direction=call.direction if call.direction in ("inbound", "outbound") else None,
            channel=call.channel,
            from_number=call.from_number,
            to_number=call.to_number,
            metadata=call.metadata if isinstance(call.metadata, dict) else {},
        )
        base: dict[str, Any] = {"provider_call_id": call_id, "type": kind, "fields": fields}
        if kind == "call_started":
            return [
                CallEvent(
                    status=CallStatus.in_progress,
                    at=call.started or received,
                    dedupe_key=f"{call_id}:{kind}",
                    **base,
                )
            ]
        if kind in FINAL_EVENTS:
            detail = call_details(call)
            status = final_status(call)
            if kind == "call_ended":
                return [
                    CallEvent(
                        status=status,
                        at=call.ended or received,
                        terminal=True,
                        detail=detail.model_dump(mode="json", exclude_none=True),
                        dedupe_key=f"{call_id}:{kind}",
                        **base,
                    )
                ]
            analysis = detail.analysis
            return [
                CallEvent(
                    status=status,
                    at=received,  # the analysis is made after the call: its time is its arrival
                    # Terminal too, so that a call whose call_ended was lost still finishes.
                    terminal=True,
                    detail=detail.model_dump(mode="json", exclude_none=True),
                    enrich={"analysis": analysis.model_dump(mode="json", exclude_none=True)}
                    if analysis
                    else None,
                    # A re-run analysis is new; a retried delivery of the same one is not.
                    dedupe_key=f"{call_id}:{kind}:{_digest(call.call_analysis)}",
                    **base,
                )
            ]
        if kind in TIMELINE_EVENTS:
            return [
                CallEvent(
                    status=None,
                    at=received,
                    dedupe_key=f"{call_id}:{kind}:{_digest(call.model_dump(mode='json'))}",
                    **base,
                )
            ]
        raise InvalidInput(f"event: unknown Retell event {kind!r}", field="event")

    def fetch(self, client: httpx.Client, source: SourceConfig, call: FetchContext) -> CallDetails:
        api_key = source.credentials.get("api_key")
        if not api_key:
            if call.completion is None:
                raise ProviderRejected("no api_key credential and no call_ended received")
            return CallDetails.model_validate(call.completion)
        base = str(source.settings.get("api_base_url") or API_BASE).rstrip("/")
        payload = get_json(
            client,
            f"{base}/v2/get-call/{quote(call.provider_call_id, safe='')}",
            {"authorization": f"Bearer {api_key}"},
        )
        try:
            return call_details(RetellCall.model_validate(payload))
        except ValidationError as exc:
            raise mismatch("Retell call", exc) from None


def _digest(value: Any) -> str:
    """A stable hash of JSON content, whatever its key order or spacing."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]
