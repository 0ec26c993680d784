"""Normalised call events and the monotonic call status order they move along."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CallStatus(StrEnum):
    queued = "queued"
    initiated = "initiated"
    ringing = "ringing"
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"
    no_answer = "no_answer"
    busy = "busy"
    canceled = "canceled"


TERMINAL_STATUSES = frozenset(
    {
        CallStatus.completed,
        CallStatus.failed,
        CallStatus.no_answer,
        CallStatus.busy,
        CallStatus.canceled,
    }
)
# The provider call id of an event whose call never turned up: it becomes a call of its own.
UNMATCHED_PREFIX = "unmatched:"

_RANK = {
    CallStatus.queued: 0,
    CallStatus.initiated: 1,
    CallStatus.ringing: 2,
    CallStatus.in_progress: 3,
}


def rank(status: CallStatus) -> int:
    """Position in the lifecycle; all terminal statuses share the highest rank."""
    return _RANK.get(status, 4)


def advance(current: CallStatus | None, incoming: CallStatus | None) -> CallStatus | None:
    """The status after an event: never backwards, and a terminal status is final."""
    if incoming is None:
        return current
    if current is None:
        return incoming
    if current in TERMINAL_STATUSES:
        return current
    return incoming if rank(incoming) >= rank(current) else current


class CallFields(BaseModel):
    """Call attributes an event may carry; `None` means the event did not say."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str | None = None
    agent_name: str | None = None
    campaign_id: str | None = None
    direction: str | None = None
    channel: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    customer_number: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class NumberMatch(BaseModel):
    """An event that does not name its call: it belongs to the latest call of its source
    between these numbers that started before `at`."""

    our_number: str
    customer_number: str


class CallEvent(BaseModel):
    """One provider event about one call, as every adapter hands it to the pipeline."""

    # Empty when the platform does not name the call (see `match`).
    provider_call_id: str
    type: str
    status: CallStatus | None
    at: datetime
    terminal: bool = False
    fields: CallFields = Field(default_factory=CallFields)
    # The event's own payload when it carries the whole call (used as the detail fallback).
    detail: dict[str, Any] | None = None
    # CallDetails fields the event adds on top of the platform's API (an analysis that arrives
    # after the call ended): merged into the record, also when it is already assembled.
    enrich: dict[str, Any] | None = None
    # An event about a call that another source reports (an analysis tool's verdict): it joins
    # the org's call known by any of these ids (provider call id or callwatch id), and waits
    # for that call when it is not known yet.
    joins: list[str] = Field(default_factory=list)
    match: NumberMatch | None = None
    dedupe_key: str
