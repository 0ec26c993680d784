"""Folds a call's events, in provider-time order, into its current state (pure)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from callwatch.model.events import CallEvent, CallFields, CallStatus, advance, rank
from callwatch.model.records import TimelineEntry

_FIRST_SEEN = {
    CallStatus.initiated: "initiated_at",
    CallStatus.ringing: "ringing_at",
    CallStatus.in_progress: "answered_at",
}


class CallState(BaseModel):
    status: CallStatus | None = None
    fields: CallFields = Field(default_factory=CallFields)
    started_at: datetime
    initiated_at: datetime | None = None
    ringing_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    terminal: bool = False
    completion: dict[str, Any] | None = None
    enrichment: dict[str, Any] = Field(default_factory=dict)
    timeline: list[TimelineEntry] = Field(default_factory=list)


def _order(item: tuple[str, CallEvent]) -> tuple[datetime, int, str, str]:
    # The inbox id comes last: it follows arrival, so events are told apart by what they are
    # (time, lifecycle step, dedupe key) before it decides anything.
    event_id, event = item
    return event.at, rank(event.status) if event.status else -1, event.dedupe_key, event_id


def fold(events: Sequence[tuple[str, CallEvent]]) -> CallState:
    """`events` are (inbox id, event) pairs in any order; the result does not depend on it.

    Precedence is by kind, not by arrival: an analysis of another source (a joining event,
    such as fixa's) is applied over everything the call's own events say, whenever it came,
    and the call starts with its own first event (an analysis is timed by its arrival)."""
    ordered = sorted(events, key=_order)
    if not ordered:
        raise ValueError("a call has at least one event")
    own = [event for _, event in ordered if not event.joins]
    state = CallState(started_at=(own or [ordered[0][1]])[0].at)
    merged: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for _, event in ordered:
        state.timeline.append(TimelineEntry(status=event.status, at=event.at, event=event.type))
        state.status = advance(state.status, event.status)
        given = event.fields.model_dump(exclude_none=True, exclude={"metadata"})
        merged.update(given)
        metadata.update(event.fields.metadata)
        if event.status in _FIRST_SEEN and getattr(state, _FIRST_SEEN[event.status]) is None:
            setattr(state, _FIRST_SEEN[event.status], event.at)
        if event.enrich and not event.joins:
            state.enrichment = overlay(state.enrichment, event.enrich)
        if event.terminal and not state.terminal:
            state.terminal = True
            state.ended_at = event.at
            state.completion = event.detail
    for _, event in ordered:
        if event.enrich and event.joins:
            state.enrichment = overlay(state.enrichment, event.enrich)
    state.fields = CallFields(**merged, metadata=metadata)
    return state


def overlay(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`; a mapping in both is merged one level down (latency stages,
    metadata keys), so an enrichment replaces what it measured and keeps the rest."""
    merged = dict(base)
    for key, value in extra.items():
        below = merged.get(key)
        merged[key] = (
            {**below, **value} if isinstance(value, dict) and isinstance(below, dict) else value
        )
    return merged
