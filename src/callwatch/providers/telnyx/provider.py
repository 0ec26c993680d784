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
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field, ValidationError

from callwatch import signatures
from callwatch.errors import (
    InvalidInput,
    ProviderRejected,
    Unauthorized,
)
from callwatch.model.events import CallEvent, CallStatus
from callwatch.model.records import CallDetails
from callwatch.outbound.http import get_json, mismatch
from callwatch.providers.base import FetchContext, SourceConfig, WebhookRequest
from callwatch.providers.telnyx.details import (
    METADATA_KEY,
    Lenient,
    Payload,
    call_status_details,
    enrichment_of,
    fields_of,
    filled,
    hangup_details,
)
from callwatch.validation import parse_body

API_BASE = "https://api.telnyx.com/v2"


TOLERANCE_S = 300


# Telnyx keeps a call's status about ten minutes after it ends, then answers 422 (or 404).
FORGOTTEN = frozenset({404, 410, 422})


PROGRESS = {
    "call.initiated": CallStatus.initiated,
    "call.answered": CallStatus.in_progress,
    "call.bridged": CallStatus.in_progress,
}


class Event(Lenient):
    event_type: str = Field(min_length=1, max_length=100)
    id: str = Field(min_length=1, max_length=200)
    occurred_at: datetime | None = None
    payload: Payload


class Envelope(Lenient):
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
        if not signatures.fresh(sent, now, TOLERANCE_S):
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
            "fields": fields_of(payload),
            "dedupe_key": event.id,
        }
        if kind == "call.hangup":
            said = hangup_details(payload, at)
            detail = said.model_dump(mode="json", exclude_none=True)
            return [CallEvent(status=said.status, terminal=True, detail=detail, **base)]
        return [
            CallEvent(status=PROGRESS.get(kind), enrich=enrichment_of(kind, payload, at), **base)
        ]

    def fetch(self, client: httpx.Client, source: SourceConfig, call: FetchContext) -> CallDetails:
        """The call's status from the API while Telnyx still has it, over the hangup's own
        details; once Telnyx has forgotten the call, what the events said."""
        if call.completion is None:
            raise ProviderRejected("no call.hangup received for this call session")
        # Who hung up needs the call's direction: `providers.settled` adds it when the record
        # is built, with all the events, not with those applied by the time of this fetch.
        completion = CallDetails.model_validate(call.completion)
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
            raise mismatch("Telnyx call status", exc) from None


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
