"""Twilio's call vocabulary, and the Calls API's call and recordings as canonical details.

Confirmed in the twilio SDK (the Call and Recording resources): API dates are RFC 2822, durations
strings of seconds, `price` a negative decimal string or null.
"""

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from callwatch.model.endings import UNANSWERED
from callwatch.model.events import CallStatus
from callwatch.model.records import CallDetails, Cost, EndReason, Recording

API_BASE = "https://api.twilio.com"

# Twilio spells the lifecycle with hyphens: `in-progress`, `no-answer`.
STATUSES = {status.value.replace("_", "-"): status for status in CallStatus}
DIRECTIONS = {
    "inbound": "inbound",
    "outbound-api": "outbound",
    "outbound-dial": "outbound",
    "trunking-originating": "inbound",
    "trunking-terminating": "outbound",
}
# Recording statuses that mean no file will come (`absent`: silent or too short).
RECORDING_LOST = frozenset({"absent", "failed", "deleted"})


def _rfc2822(value: Any) -> Any:
    """Twilio's dates (`Thu, 01 Jan 2026 00:00:42 +0000`) as aware datetimes; ISO passes."""
    if not isinstance(value, str) or not value or value[0].isdigit():
        return value
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise ValueError("not an RFC 2822 date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


Rfc2822 = Annotated[datetime, BeforeValidator(_rfc2822)]


class Lenient(BaseModel):
    """Twilio adds parameters without notice, and sends absent ones as empty strings."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value not in ("", None)}
        return data


class ApiRecording(Lenient):
    status: str | None = None
    duration: float | None = None
    channels: int | None = None
    uri: str | None = None
    media_url: str | None = None


class ApiCall(Lenient):
    sid: str
    account_sid: str | None = None
    parent_call_sid: str | None = None
    status: str | None = None
    direction: str | None = None
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    date_created: Rfc2822 | None = None
    start_time: Rfc2822 | None = None
    end_time: Rfc2822 | None = None
    duration: float | None = None
    price: str | None = None
    price_unit: str | None = None
    answered_by: str | None = None


def channel_of(*numbers: str | None) -> str:
    if any(number and number.startswith("client:") for number in numbers):
        return "web"
    if any(number and number.startswith("sip:") for number in numbers):
        return "sip"
    return "phone"


def metadata_of(account: str | None, parent: str | None) -> dict[str, Any]:
    found = {"account_sid": account, "parent_call_sid": parent}
    return {key: value for key, value in found.items() if value}


def machine_end(answered_by: str | None) -> EndReason | None:
    """Answering machine detection's verdict as an end reason: a machine means voicemail."""
    value = (answered_by or "").lower()
    if value.startswith("machine"):
        return "voicemail"
    return "other" if value == "fax" else None


def raw_reason(status: CallStatus, raw: str, answered_by: str | None) -> str | None:
    if status in UNANSWERED:
        return raw
    return answered_by if machine_end(answered_by) else None


def media_url(url: str) -> str:
    """A recording's media as WAV (Twilio's default) unless its URL already names a format."""
    last = urlsplit(url).path.rsplit("/", 1)[-1]
    return url if "." in last else url + ".wav"


def call_details(found: dict[str, Any], recordings: Any, base: str = API_BASE) -> CallDetails:
    """`GET …/Calls/{CallSid}.json` and its `/Recordings.json`, mapped onto the canonical details;
    `base` is the API host that relative recording URIs are served from."""
    call = ApiCall.model_validate(found)
    raw = (call.status or "").lower()
    status = STATUSES.get(raw)
    end_reason = UNANSWERED.get(status) if status else None
    return CallDetails(
        direction=DIRECTIONS.get((call.direction or "").lower()),
        channel=channel_of(call.from_, call.to),
        from_number=call.from_,
        to_number=call.to,
        status=status,
        end_reason=end_reason or machine_end(call.answered_by),
        end_reason_raw=raw_reason(status, raw, call.answered_by) if status else None,
        created_at=call.date_created,
        initiated_at=call.start_time,
        ended_at=call.end_time,
        duration_s=call.duration,
        recording=None if recordings is None else recording_of(recordings, base),
        cost=_cost(call.price, call.price_unit),
        metadata=metadata_of(call.account_sid, call.parent_call_sid) or None,
    )


def recording_of(recordings: Any, base: str) -> Recording:
    """The longest completed recording; `pending` while one is still being made or processed;
    `missing` when all were lost; `none` when the call was never recorded."""
    items = recordings.get("recordings", []) if isinstance(recordings, dict) else recordings
    found = [ApiRecording.model_validate(item) for item in items or []]
    done = [item for item in found if item.status == "completed" and (item.media_url or item.uri)]
    if done:
        chosen = max(done, key=lambda item: item.duration or 0)
        location = chosen.media_url or base + (chosen.uri or "").removesuffix(".json")
        url = media_url(location)
        return Recording(
            status="available", url=url, dual_url=url if chosen.channels == 2 else None
        )
    if not found:
        return Recording(status="none")
    if all(item.status in RECORDING_LOST for item in found):
        return Recording(status="missing")
    return Recording(status="pending")


def _cost(price: str | None, unit: str | None) -> Cost | None:
    """Twilio bills as a negative price; the cost is its opposite, in `price_unit`."""
    if price is None:
        return None  # not priced yet, shortly after the call
    try:
        amount = float(-Decimal(price))
    except InvalidOperation:
        raise ValueError(f"price {price!r} is not a decimal") from None
    return Cost(total=amount, currency=(unit or "").upper() or None, telephony=amount)
