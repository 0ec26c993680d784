"""Bolna: the whole execution re-posted on every status, unsigned; `GET /executions/{id}`.

Confirmed in Bolna's docs: the status lifecycle (scheduled, queued, rescheduled, initiated,
ringing, in-progress, call-disconnected, completed; busy, no-answer, balance-low; canceled,
failed, stopped, error); `completed` comes minutes after `call-disconnected` and only then
carries conversation_duration, total_cost, recording_url and extracted_data; a `completed` call
may not have been answered (check conversation_duration and telephony_data.hangup_reason);
`total_cost` and `cost_breakdown` are in cents ("Total cost incurred by this execution in
cents"); `hangup_by` values (API Request, Callee, Caller, Carrier, Error, Plivo, Unknown) and
Bolna's own hangup reasons (inactivity_timeout, llm_prompted_hangup); `latency_data` with
`time_to_first_audio` (ms) and per-turn transcriber `audio_to_text_latency` (ms). The per-turn
LLM and synthesizer figures' key names are not documented: the first of a few likely names is
read.
"""

import hashlib
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from callwatch.errors import InvalidInput, ProviderRejected
from callwatch.model.endings import UNANSWERED
from callwatch.model.events import CallEvent, CallStatus
from callwatch.model.records import CallDetails
from callwatch.outbound.http import get_json, mismatch
from callwatch.providers.base import FetchContext, SourceConfig, WebhookRequest
from callwatch.providers.bolna.details import STATUSES, Execution, details_of, fields_of, status_of
from callwatch.validation import parse_body

API_BASE = "https://api.bolna.ai"


class BolnaProvider:
    name = "bolna"

    def prepare_credentials(self, credentials: dict[str, str]) -> str | None:
        return None  # unsigned: the webhook token (and allowed_ips) is the credential

    def authenticate(self, request: WebhookRequest, source: SourceConfig, now: float) -> str | None:
        return None  # nothing to verify; the receiver has checked the source's allowed_ips

    def parse(self, request: WebhookRequest, delivery_id: str | None) -> list[CallEvent]:
        execution = parse_body(Execution, request.body)
        if execution.status not in STATUSES:
            raise InvalidInput(
                f"status: unknown Bolna execution status {execution.status!r}; known: "
                + ", ".join(STATUSES),
                field="status",
            )
        status = status_of(execution)
        terminal = status in UNANSWERED or status is CallStatus.completed
        detail = details_of(execution).model_dump(mode="json", exclude_none=True)
        return [
            CallEvent(
                provider_call_id=execution.id,
                type=execution.status,
                status=status,
                at=execution.updated_at or request.received_at,
                terminal=terminal,
                fields=fields_of(execution),
                detail=detail if terminal else None,
                # `completed` lands even after assembly, which `call-disconnected` started.
                enrich=detail if execution.status == "completed" else None,
                dedupe_key=dedupe_key(execution, request.body),
            )
        ]

    def fetch(self, client: httpx.Client, source: SourceConfig, call: FetchContext) -> CallDetails:
        """The execution from the API until it is `completed` (its recording pending till then);
        without an API key, what the webhooks said."""
        api_key = source.credentials.get("api_key")
        if not api_key:
            if call.completion is None:
                raise ProviderRejected("no api_key credential and no final status received")
            return CallDetails.model_validate(call.completion)
        base = str(source.settings.get("api_base_url") or API_BASE).rstrip("/")
        url = f"{base}/executions/{quote(call.provider_call_id, safe='')}"
        found = get_json(client, url, {"authorization": f"Bearer {api_key}"})
        try:
            return details_of(Execution.model_validate(found))
        except ValidationError as exc:
            raise mismatch("Bolna execution", exc) from None


def dedupe_key(execution: Execution, body: bytes) -> str:
    """No delivery id: (execution, status, updated_at); the body when there is no time."""
    stamp = execution.updated_at.isoformat() if execution.updated_at else _digest(body)
    return "h:" + _digest(f"{execution.id}|{execution.status}|{stamp}".encode())


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:40]
