"""Twilio's side of a simulated call: signed form callbacks and the Calls and Recordings API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from callwatch.model.events import CallStatus
from callwatch.model.records import Recording
from callwatch.simulator.base import Platform
from callwatch.simulator.calls import SimCall

API_VERSION = "2010-04-01"
ACCOUNT_SID = "AC" + hashlib.sha256(b"callwatch-sim-account").hexdigest()[:32]
# Twilio processes the recording after the call; its callback comes a few seconds later.
RECORDING_AFTER = timedelta(seconds=4)
# How each call ended, in Twilio's words, and the SIP answer behind it.
CALL_STATUS = {
    CallStatus.completed: "completed",
    CallStatus.no_answer: "no-answer",
    CallStatus.busy: "busy",
    CallStatus.failed: "failed",
    CallStatus.canceled: "canceled",
}
SIP_RESPONSE = {
    CallStatus.completed: "200",
    CallStatus.no_answer: "487",
    CallStatus.busy: "486",
    CallStatus.failed: "503",
    CallStatus.canceled: "487",
}


def call_id(call: SimCall) -> str:
    """A Call SID: CA and 32 hex digits."""
    return "CA" + _hex32(call.call_id)


def recording_sid(call: SimCall) -> str:
    return "RE" + _hex32("recording" + call.call_id)


def timed_webhooks(call: SimCall, embed_detail: bool) -> list[tuple[datetime, dict[str, Any]]]:
    """Status callbacks for initiated, ringing, answered and completed (the call's final status),
    then the recording callback seconds after the call ended. Twilio's callbacks never carry
    the call's details: `embed_detail` changes nothing."""
    steps = [(call.started_at, "initiated"), (call.ringing_at, "ringing")]
    if call.answered_at is not None:
        steps.append((call.answered_at, "in-progress"))
    steps.append((call.ended_at, CALL_STATUS[call.status]))
    sent = [(at, _status_callback(call, status, at, seq)) for seq, (at, status) in enumerate(steps)]
    recording = call.detail.recording
    if recording is not None and recording.url and call.answered_at is not None:
        sent.append((call.ended_at + RECORDING_AFTER, _recording_callback(call, recording.url)))
    return sent


def _common(call: SimCall) -> dict[str, str]:
    return {"AccountSid": ACCOUNT_SID, "ApiVersion": API_VERSION, "CallSid": call_id(call)}


def _status_callback(call: SimCall, status: str, at: datetime, seq: int) -> dict[str, Any]:
    body = _common(call) | {
        "CallStatus": status,
        "Direction": "inbound" if call.direction == "inbound" else "outbound-api",
        "From": call.from_number,
        "To": call.to_number,
        "Caller": call.from_number,
        "Called": call.to_number,
        "FromCountry": "US",
        "ToCountry": "US",
        "CallbackSource": "call-progress-events",
        "SequenceNumber": str(seq),
        "Timestamp": rfc2822(at),
    }
    if status not in ("initiated", "ringing", "in-progress"):
        body["CallDuration"] = str(round(call.detail.duration_s or 0))
        body["SipResponseCode"] = SIP_RESPONSE[call.status]
    return body


def _recording_callback(call: SimCall, url: str) -> dict[str, Any]:
    assert call.answered_at is not None
    return _common(call) | {
        "RecordingSid": recording_sid(call),
        "RecordingUrl": url.removesuffix(".wav"),  # Twilio names no format: WAV by default
        "RecordingStatus": "completed",
        "RecordingDuration": str(round(call.detail.duration_s or 0)),
        "RecordingChannels": "2",
        "RecordingStartTime": rfc2822(call.answered_at),
        "RecordingSource": "DialVerb" if call.direction == "inbound" else "OutboundAPI",
        "RecordingTrack": "both",
        "ErrorCode": "0",
    }


# ---------------------------------------------------------------- signing


def signed_form(
    secret: str, body: dict[str, Any], now: float, url: str
) -> tuple[bytes, dict[str, str]]:
    """The body form-encoded, signed as Twilio signs it for `url`: base64 HMAC-SHA1 with the
    Auth Token over the URL and every parameter, sorted by name, as name + value."""
    params = {name: str(value) for name, value in body.items() if value is not None}
    message = url + "".join(name + params[name] for name in sorted(params))
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": _mac(secret, message),
    }
    return urlencode(params).encode(), headers


def signed_json(
    secret: str, body: dict[str, Any], now: float, url: str
) -> tuple[bytes, dict[str, str], str]:
    """The JSON variant: the URL gains `bodySHA256=<hex sha256 of the body>` and only the URL
    is signed. Returns the bytes, their headers, and the URL to post them to."""
    content = json.dumps(body, separators=(",", ":")).encode()
    joiner = "&" if urlsplit(url).query else "?"
    signed_url = f"{url}{joiner}bodySHA256={hashlib.sha256(content).hexdigest()}"
    headers = {"content-type": "application/json", "x-twilio-signature": _mac(secret, signed_url)}
    return content, headers, signed_url


def _mac(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# ---------------------------------------------------------------- the API


def _call_path(call: SimCall) -> str:
    return f"/{API_VERSION}/Accounts/{ACCOUNT_SID}/Calls/{call_id(call)}"


def call_json(call: SimCall, recording: Recording) -> dict[str, Any]:
    """`GET /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`."""
    answered = call.answered_at is not None
    cost = call.detail.cost
    telephony = cost.telephony if cost and answered else None
    path = _call_path(call)
    return {
        "sid": call_id(call),
        "account_sid": ACCOUNT_SID,
        "parent_call_sid": None,
        "date_created": rfc2822(call.started_at),
        "date_updated": rfc2822(call.ended_at + RECORDING_AFTER),
        "from": call.from_number,
        "from_formatted": _formatted(call.from_number),
        "to": call.to_number,
        "to_formatted": _formatted(call.to_number),
        "phone_number_sid": "PN" + _hex32(call.agent_id),
        "status": CALL_STATUS[call.status],
        "start_time": rfc2822(call.started_at),
        "end_time": rfc2822(call.ended_at),
        # Empty for busy, failed and unanswered calls.
        "duration": str(round(call.detail.duration_s or 0)) if answered else None,
        "price": f"{-telephony:.5f}" if telephony is not None else None,
        "price_unit": "USD",
        "direction": "inbound" if call.direction == "inbound" else "outbound-api",
        "answered_by": None,
        "api_version": API_VERSION,
        "forwarded_from": None,
        "caller_name": None,
        "queue_time": "0",
        "trunk_sid": None,
        "uri": f"{path}.json",
        "subresource_uris": {"recordings": f"{path}/Recordings.json"},
    }


def recordings_json(call: SimCall, recording: Recording) -> dict[str, Any]:
    """`GET …/Calls/{CallSid}/Recordings.json`: `processing` until the file is ready."""
    path = _call_path(call)
    page = {
        "first_page_uri": f"{path}/Recordings.json?PageSize=50&Page=0",
        "next_page_uri": None,
        "previous_page_uri": None,
        "page": 0,
        "page_size": 50,
        "start": 0,
        "end": 0,
        "uri": f"{path}/Recordings.json?PageSize=50&Page=0",
    }
    if recording.status == "none" or call.answered_at is None:
        return page | {"recordings": []}
    ready = recording.url is not None
    sid = recording_sid(call)
    item = {
        "account_sid": ACCOUNT_SID,
        "api_version": API_VERSION,
        "call_sid": call_id(call),
        "conference_sid": None,
        "date_created": rfc2822(call.answered_at),
        "date_updated": rfc2822(call.ended_at + (RECORDING_AFTER if ready else timedelta())),
        "start_time": rfc2822(call.answered_at),
        "duration": str(round(call.detail.duration_s or 0)) if ready else "-1",
        "sid": sid,
        "price": None,
        "price_unit": "USD",
        "status": "completed" if ready else "processing",
        "channels": 2,
        "source": "DialVerb" if call.direction == "inbound" else "OutboundAPI",
        "error_code": None,
        "track": "both",
        "uri": f"/{API_VERSION}/Accounts/{ACCOUNT_SID}/Recordings/{sid}.json",
        # Where this simulator serves the file; Twilio's is the `uri` without `.json`.
        "media_url": recording.url.removesuffix(".wav") if recording.url else None,
    }
    return page | {"end": 0, "recordings": [item]}


def rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0))


def _formatted(number: str) -> str:
    digits = number.removeprefix("+1")
    return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}" if len(digits) == 10 else number


def _hex32(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


PLATFORM = Platform(
    webhooks=timed_webhooks,
    secret_name="auth_token",  # noqa: S106 - a credential's name
    sign_url=signed_form,
    call_id=call_id,
    api={
        f"/{API_VERSION}/Accounts/{ACCOUNT_SID}/Calls/{{call_id}}.json": call_json,
        f"/{API_VERSION}/Accounts/{ACCOUNT_SID}/Calls/{{call_id}}/Recordings.json": recordings_json,
    },
)
