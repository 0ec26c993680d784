"""Origins AI / Dialflo: one unsigned completion POST per call, re-fetched from the call API."""

import hashlib
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from pydantic import BeforeValidator, Field, RootModel, ValidationError

from callwatch.errors import ProviderRejected, ProviderUnavailable
from callwatch.model.events import TERMINAL_STATUSES, CallEvent, CallFields
from callwatch.model.records import CallDetails
from callwatch.outbound.http import get_json, mismatch
from callwatch.providers.base import FetchContext, SourceConfig, WebhookRequest
from callwatch.providers.origins.details import (
    METADATA_KEY,
    CallObject,
    as_text,
    details_of,
    direction_of,
    known_status,
)
from callwatch.validation import parse_body

API_BASE = "https://api.dialflo.ai"


class WebhookCall(CallObject):
    call_id: Annotated[str, BeforeValidator(as_text)] = Field(min_length=1, max_length=200)
    call_status: Annotated[str, BeforeValidator(known_status)]


class WebhookBatch(RootModel[list[WebhookCall]]):
    """A one-element array, the shape Dialflo's `call_details` answers with, is accepted too."""

    root: list[WebhookCall] = Field(min_length=1, max_length=1)


def dedupe_key(call: CallObject) -> str:
    """No delivery id: a stable hash of (call id, status, end time)."""
    ended = call.end_time.isoformat() if call.end_time else ""
    text = f"{call.call_id}|{call.call_status}|{ended}"
    return "h:" + hashlib.sha256(text.encode()).hexdigest()[:40]


class OriginsProvider:
    name = "origins"

    def prepare_credentials(self, credentials: dict[str, str]) -> str | None:
        return None  # unsigned: the webhook token in the URL is the credential

    def authenticate(self, request: WebhookRequest, source: SourceConfig, now: float) -> str | None:
        return None  # nothing to verify; the receiver has checked the source's allowed_ips

    def parse(self, request: WebhookRequest, delivery_id: str | None) -> list[CallEvent]:
        if request.body.lstrip()[:1] == b"[":
            [call] = parse_body(WebhookBatch, request.body).root
        else:
            call = parse_body(WebhookCall, request.body)
        status = call.status
        assert status is not None  # a webhook call always has a known call_status
        terminal = status in TERMINAL_STATUSES
        fields = CallFields(
            agent_id=call.agent,
            agent_name=call.agent_name,
            direction=direction_of(call.call_direction),
            channel="phone",
            from_number=call.from_number,
            to_number=call.to_number,
        )
        at = (call.end_time if terminal else call.initiation_time) or request.received_at
        detail = details_of(call).model_dump(mode="json", exclude_none=True) if terminal else None
        return [
            CallEvent(
                provider_call_id=call.call_id,
                type="call-completed" if terminal else "call-status",
                status=status,
                at=at,
                terminal=terminal,
                fields=fields,
                detail=detail,
                dedupe_key=dedupe_key(call),
            )
        ]

    def fetch(self, client: httpx.Client, source: SourceConfig, call: FetchContext) -> CallDetails:
        api_key = source.credentials.get("api_key")
        if not api_key:
            if call.completion is None:
                raise ProviderRejected("no api_key credential and no completion received")
            return CallDetails.model_validate(call.completion)
        base = str(source.settings.get("api_base_url") or API_BASE).rstrip("/")
        payload = get_json(client, detail_url(base, call.completion), auth_headers(api_key))
        return fetched_details(payload, call.provider_call_id, call.completion)


def detail_url(base: str, completion: dict[str, Any] | None) -> str:
    """Dialflo's `call_details/{task_id}`, else Origins' `agents/{agent_id}/call_stats`."""
    known = CallDetails.model_validate(completion or {})
    task_id = ((known.metadata or {}).get(METADATA_KEY) or {}).get("task_id")
    if task_id:
        return f"{base}/call_details/{quote(str(task_id), safe='')}"
    if known.agent_id:
        return f"{base}/api/agents/{quote(known.agent_id, safe='')}/call_stats"
    raise ProviderRejected("the completion names neither a task_id nor an agent_id to look up")


def auth_headers(api_key: str) -> dict[str, str]:
    """Dialflo's documented `auth_token: Bearer`; Origins' scheme is undocumented, so also the
    usual `Authorization: Bearer`."""
    return {"auth_token": f"Bearer {api_key}", "authorization": f"Bearer {api_key}"}


def fetched_details(payload: Any, call_id: str, completion: dict[str, Any] | None) -> CallDetails:
    """Our call out of a detail response (an array of call objects), filled from the completion."""
    try:
        found = CallObject.model_validate(pick(payload, call_id))
    except ValidationError as exc:
        raise mismatch("Origins call object", exc) from None
    fetched = details_of(found)
    return filled(fetched, CallDetails.model_validate(completion)) if completion else fetched


def pick(payload: Any, call_id: str) -> Any:
    """The element naming `call_id`; an only element naming no call is taken as ours (Dialflo's
    example names none). A list without our call is retried: it may lag the webhook, and the
    pipeline bounds the retries. A response that is no list of call objects is rejected."""
    items = _items(payload)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ProviderRejected("Origins detail response is not a list of call objects")
    wanted = call_id.lower()
    for item in items:
        if str(item.get("call_id") or "").lower() == wanted:
            return item
    if len(items) == 1 and not items[0].get("call_id"):
        return items[0]
    raise ProviderUnavailable(f"the detail response does not list call {call_id} (yet)")


def _items(payload: Any) -> Any:
    """An array as documented; also `{"data": [...]}` or one call object."""
    if not isinstance(payload, dict):
        return payload
    if "data" in payload:
        return payload["data"]
    return [payload] if "call_id" in payload else None


def filled(fetched: CallDetails, completion: CallDetails) -> CallDetails:
    """The API is authoritative: `fetched` where it says something, else the completion."""
    kept = {
        **((completion.metadata or {}).get(METADATA_KEY) or {}),
        **((fetched.metadata or {}).get(METADATA_KEY) or {}),
    }
    return CallDetails.model_validate(
        {
            **completion.model_dump(exclude_none=True),
            **fetched.model_dump(exclude_none=True),
            "metadata": {METADATA_KEY: kept} if kept else None,
        }
    )
