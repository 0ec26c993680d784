"""Twilio Programmable Voice: signed call and recording status callbacks, the Calls API."""

import base64
import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import Field, ValidationError

from callwatch.errors import InvalidInput, MalformedBody, ProviderRejected, Unauthorized
from callwatch.model.endings import UNANSWERED
from callwatch.model.events import TERMINAL_STATUSES, CallEvent, CallFields
from callwatch.model.records import CallDetails, CallError, Recording
from callwatch.outbound.http import get_json, mismatch
from callwatch.providers.base import FetchContext, SourceConfig, WebhookRequest
from callwatch.providers.twilio.call import (
    API_BASE,
    DIRECTIONS,
    RECORDING_LOST,
    STATUSES,
    Lenient,
    Rfc2822,
    call_details,
    channel_of,
    machine_end,
    media_url,
    metadata_of,
    raw_reason,
)
from callwatch.providers.twilio.signature import form_params, signature_valid, signing_algorithm
from callwatch.validation import invalid, require_finite

API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "x-twilio-signature"
SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
CALL_SID = r"^CA[0-9a-fA-F]{32}$"
ACCOUNT_SID = r"^AC[0-9a-fA-F]{32}$"


class Callback(Lenient):
    """The parameters of a call status, recording status or async AMD callback."""

    CallSid: str = Field(pattern=CALL_SID)
    AccountSid: str | None = Field(None, pattern=ACCOUNT_SID)
    CallStatus: str | None = None
    SequenceNumber: int | None = Field(None, ge=0)
    Timestamp: Rfc2822 | None = None
    Direction: str | None = None
    From: str | None = None
    To: str | None = None
    CallDuration: float | None = Field(None, ge=0)
    AnsweredBy: str | None = None
    ParentCallSid: str | None = None
    ErrorCode: str | None = None
    ErrorMessage: str | None = None
    RecordingSid: str | None = Field(None, pattern=r"^RE[0-9a-fA-F]{32}$")
    RecordingStatus: str | None = None
    RecordingUrl: str | None = Field(None, pattern=r"^https?://")
    RecordingChannels: int | None = None


class TwilioProvider:
    name = "twilio"

    def prepare_credentials(self, credentials: dict[str, str]) -> str | None:
        if not credentials.get("auth_token"):
            raise InvalidInput(
                "credentials.auth_token: required, the account's Auth Token (Twilio signs "
                "callbacks with it)",
                field="credentials.auth_token",
            )
        account = credentials.get("account_sid")
        if account is not None and not re.fullmatch(ACCOUNT_SID, account):
            raise InvalidInput(
                "credentials.account_sid: an Account SID is AC and 32 hex digits",
                field="credentials.account_sid",
            )
        if bool(credentials.get("api_key_sid")) != bool(credentials.get("api_key_secret")):
            raise InvalidInput(
                "credentials.api_key_secret: an API key needs both api_key_sid and api_key_secret",
                field="credentials.api_key_secret",
            )
        return None

    def authenticate(self, request: WebhookRequest, source: SourceConfig, now: float) -> str | None:
        given = request.headers.get(SIGNATURE_HEADER)
        if not given:
            raise Unauthorized("missing X-Twilio-Signature header")
        settings = request.headers.get(SETTINGS_HEADER)
        algorithm = signing_algorithm(settings)
        credentials = source.credentials
        shared = credentials.get("webhook_signing_key") if settings else None
        key = (shared or credentials.get("auth_token", "")).encode()
        if not key or not signature_valid(key, request.url, request.body, given, algorithm):
            raise Unauthorized(
                "X-Twilio-Signature does not match the URL and parameters "
                "(CALLWATCH_PUBLIC_URL must be the base URL Twilio calls)"
            )
        return None  # Twilio sends no delivery id: events dedupe on the call and its sequence

    def parse(self, request: WebhookRequest, delivery_id: str | None) -> list[CallEvent]:
        callback = _callback(request)
        received = request.received_at
        if callback.RecordingStatus:
            return [_recording_event(callback, received)]
        if callback.CallStatus:
            return [_call_event(callback, received)]
        if callback.AnsweredBy:
            return [_amd_event(callback, received)]
        raise InvalidInput(
            "CallStatus: a Twilio voice callback has CallStatus, RecordingStatus or AnsweredBy",
            field="CallStatus",
        )

    def fetch(self, client: httpx.Client, source: SourceConfig, call: FetchContext) -> CallDetails:
        credentials = source.credentials
        said = (call.completion or {}).get("metadata") or {}
        account = said.get("account_sid") or credentials.get("account_sid")
        if not account:
            raise ProviderRejected("no account_sid credential and no AccountSid in the callbacks")
        headers = {"authorization": _basic_auth(credentials, account)}
        base = str(source.settings.get("api_base_url") or API_BASE).rstrip("/")
        account_path = f"{base}/{API_VERSION}/Accounts/{quote(str(account), safe='')}"
        calls = f"{account_path}/Calls/{quote(call.provider_call_id, safe='')}"
        found = get_json(client, f"{calls}.json", headers)
        status = STATUSES.get(str(found.get("status")) if isinstance(found, dict) else "")
        recordings = None
        if status not in UNANSWERED:  # an unanswered call has nothing recorded
            recordings = get_json(client, f"{calls}/Recordings.json", headers)
        try:
            return call_details(found, recordings, base)
        except (ValidationError, AttributeError, TypeError, ValueError) as exc:
            raise mismatch("Twilio call", exc) from None


def recording_headers(source: SourceConfig, url: str) -> dict[str, str] | None:
    """Basic auth for a recording's media on the source's Twilio API host (Twilio's "HTTP Basic
    auth for media"); None for any other host, which is never sent the account's secret."""
    base = str(source.settings.get("api_base_url") or API_BASE)
    if urlsplit(url).netloc.lower() != urlsplit(base).netloc.lower():
        return None
    found = re.search(r"/Accounts/(AC[0-9a-fA-F]{32})/", urlsplit(url).path)
    account = source.credentials.get("account_sid") or (found.group(1) if found else None)
    if not account or not source.credentials.get("auth_token"):
        return None
    return {"authorization": _basic_auth(source.credentials, account)}


def _basic_auth(credentials: dict[str, str], account: str) -> str:
    """An API key if given, else the account's SID and Auth Token."""
    if credentials.get("api_key_sid"):
        user, password = credentials["api_key_sid"], credentials.get("api_key_secret", "")
    else:
        user, password = (
            credentials.get("account_sid") or account,
            credentials.get("auth_token", ""),
        )
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _callback(request: WebhookRequest) -> Callback:
    """The callback's parameters: form-encoded, or a JSON object (the bodySHA256 variant)."""
    if "bodySHA256" in request.query or "json" in request.content_type.lower():
        try:
            data = json.loads(request.body)
        except (ValueError, RecursionError):  # nested too deep for the parser: not a callback
            raise MalformedBody("body is not valid JSON") from None
        if not isinstance(data, dict):
            raise MalformedBody("body: a JSON callback is an object of parameters")
        flat = {key: _text(value) for key, value in data.items()}
    else:
        flat = dict(reversed(form_params(request.body)))  # the first of repeated names
    if any("\x00" in key or "\x00" in value for key, value in flat.items() if value):
        raise InvalidInput("body: parameters must not contain NUL", field="body")
    try:
        callback = Callback.model_validate(flat)
    except ValidationError as exc:
        raise invalid(exc) from None
    require_finite(callback)  # a form's "NaN" or "inf" is a float to pydantic
    return callback


def _text(value: Any) -> str | None:
    """A JSON value as the string a form parameter would carry."""
    return value if value is None or isinstance(value, str) else json.dumps(value)


def _call_event(callback: Callback, received: datetime) -> CallEvent:
    raw = (callback.CallStatus or "").lower()
    status = STATUSES.get(raw)
    if status is None:
        raise InvalidInput(f"CallStatus: unknown Twilio call status {raw!r}", field="CallStatus")
    sid = callback.CallSid
    at = callback.Timestamp or received
    metadata = metadata_of(callback.AccountSid, callback.ParentCallSid)
    fields = CallFields(
        direction=DIRECTIONS.get((callback.Direction or "").lower()),
        channel=channel_of(callback.From, callback.To),
        from_number=callback.From,
        to_number=callback.To,
        metadata=metadata,
    )
    terminal = status in TERMINAL_STATUSES
    said = _said(callback)
    detail = None
    if terminal:
        own = {
            **fields.model_dump(exclude={"metadata"}),
            "status": status,
            "end_reason": UNANSWERED.get(status),
            "end_reason_raw": raw_reason(status, raw, None),
            "ended_at": at,
            "duration_s": callback.CallDuration,
            "metadata": metadata or None,
        }
        detail = CallDetails(**(own | said)).model_dump(mode="json", exclude_none=True)
    # Retries resend the same parameters; each progress event has its own sequence number.
    order = callback.SequenceNumber if callback.SequenceNumber is not None else "-"
    return CallEvent(
        provider_call_id=sid,
        type=f"call.{raw}",
        status=status,
        at=at,
        terminal=terminal,
        fields=fields,
        detail=detail,
        enrich=_dumped(said),
        dedupe_key=f"{sid}:call:{order}:{raw}",
    )


def _said(callback: Callback) -> dict[str, Any]:
    """What only a callback says, laid over the Calls API: the AMD verdict, Twilio's error."""
    said: dict[str, Any] = {}
    if end_reason := machine_end(callback.AnsweredBy):
        said |= {"end_reason": end_reason, "end_reason_raw": callback.AnsweredBy}
    if callback.ErrorCode and callback.ErrorCode != "0":
        message = (
            f"{callback.ErrorCode}: {callback.ErrorMessage}" if callback.ErrorMessage else None
        )
        said["errors"] = [CallError(type=f"twilio_{callback.ErrorCode}", description=message)]
    return said


def _dumped(said: dict[str, Any]) -> dict[str, Any] | None:
    if not said:
        return None
    return CallDetails(**said).model_dump(mode="json", exclude_none=True, include=set(said))


def _amd_event(callback: Callback, received: datetime) -> CallEvent:
    """An async answering-machine-detection callback: only its verdict."""
    verdict = (callback.AnsweredBy or "").lower()
    return CallEvent(
        provider_call_id=callback.CallSid,
        type=f"amd.{verdict}",
        status=None,
        at=callback.Timestamp or received,
        fields=CallFields(metadata=metadata_of(callback.AccountSid, callback.ParentCallSid)),
        enrich=_dumped(_said(callback)),
        dedupe_key=f"{callback.CallSid}:amd:{verdict}",
    )


def _recording_event(callback: Callback, received: datetime) -> CallEvent:
    """The recording callback: the file once `completed`, or that none will come."""
    raw = (callback.RecordingStatus or "").lower()
    sid = callback.CallSid
    recording: Recording | None = None
    if raw == "completed":
        if not callback.RecordingUrl:
            raise InvalidInput(
                "RecordingUrl: a completed recording callback names its media", field="RecordingUrl"
            )
        url = media_url(callback.RecordingUrl)
        dual = url if callback.RecordingChannels == 2 else None
        recording = Recording(status="available", url=url, dual_url=dual, available_at=received)
    elif raw in RECORDING_LOST:
        recording = Recording(status="missing")
    enrich = (
        {"recording": recording.model_dump(mode="json", exclude_none=True)} if recording else None
    )
    return CallEvent(
        provider_call_id=sid,
        type=f"recording.{raw}",
        status=None,
        at=received,  # it carries no time of its own, only when the recording started
        fields=CallFields(metadata=metadata_of(callback.AccountSid, None)),
        enrich=enrich,
        dedupe_key=f"{sid}:recording:{callback.RecordingSid or '-'}:{raw}",
    )
