"""Pure assembly: merge event state with platform details into the design.md §7 record."""

from datetime import datetime

from callwatch.calls.fold import CallState, overlay
from callwatch.model.events import TERMINAL_STATUSES
from callwatch.model.records import (
    Assembly,
    CallDetails,
    CallFacts,
    CallRecord,
    Latency,
    Metrics,
    Recording,
)

# The details' fields the record holds as well; the others (the raw latency samples) it sums up.
_FACTS = set(CallFacts.model_fields)


def merge(state: CallState, details: CallDetails | None) -> CallDetails:
    """Details win where they say something; the events fill in what they leave out."""
    from_events = CallDetails(
        **state.fields.model_dump(exclude={"metadata"}),
        status=state.status,
        initiated_at=state.initiated_at,
        answered_at=state.answered_at,
        ended_at=state.ended_at,
        created_at=state.started_at,
        metadata=state.fields.metadata or None,
    )
    if details is None:
        merged = from_events
    else:
        known = details.model_dump(exclude_none=True, exclude={"status", "metadata"})
        metadata = {**state.fields.metadata, **(details.metadata or {})}
        merged = CallDetails.model_validate(
            {**from_events.model_dump(exclude_none=True), **known, "metadata": metadata or None}
        )
    if state.enrichment:
        merged = CallDetails.model_validate(
            overlay(merged.model_dump(exclude_none=True), state.enrichment)
        )
    if merged.customer_number is None:
        customer = customer_of(merged.direction, merged.from_number, merged.to_number)
        merged = merged.model_copy(update={"customer_number": customer})
    return merged


def customer_of(
    direction: str | None, from_number: str | None, to_number: str | None
) -> str | None:
    """The customer's side of a call: who called in, or who was called."""
    if direction == "inbound":
        return from_number
    if direction == "outbound":
        return to_number
    return None


def recording_of(details: CallDetails, now: datetime) -> Recording:
    """`available` once a URL is known; `missing` or `none` if the platform says so; `none` for
    a call never answered; else `pending`."""
    given = details.recording or Recording()
    if given.url:
        return given.model_copy(
            update={
                "status": "available",
                "available_at": given.available_at or now,
                "archive": None,  # callwatch's own, whatever a platform's details say
            }
        )
    if given.status in ("missing", "none"):
        return Recording(status=given.status)  # the platform says there is none, or never will be
    if details.answered_at is None and details.status in TERMINAL_STATUSES - {"completed"}:
        return Recording(status="none")
    return Recording(status="pending")


def build(
    *,
    call_id: str,
    org_id: str,
    source: str,
    provider: str,
    provider_call_id: str,
    state: CallState,
    details: CallDetails,
    recording: Recording,
    metrics: Metrics | None,
    assembly: Assembly,
    updated_at: datetime,
) -> CallRecord:
    derived = metrics.model_dump(exclude={"latency"}) if metrics else {}
    return CallRecord(
        **details.model_dump(
            include=_FACTS, exclude={"status", "recording", "latency", "metadata", *derived}
        ),
        **{key: value for key, value in derived.items() if value is not None},
        id=call_id,
        org_id=org_id,
        source=source,
        provider=provider,
        provider_call_id=provider_call_id,
        status=state.status or details.status,
        recording=recording,
        latency=metrics.latency if metrics else Latency(),
        metadata=details.metadata or {},
        timeline=state.timeline,
        assembly=assembly,
        updated_at=updated_at,
    )


def backoff(
    failures: int, *, base: float, cap: float, retry_after: float | None, jitter: float
) -> float:
    """Exponential backoff with jitter in [0.5, 1.5); Retry-After is a floor; never above cap."""
    delay: float = base * 2.0 ** max(0, failures - 1) * (0.5 + jitter)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, cap)


def recording_delay(checks: int, *, low: float, high: float, left: float) -> float:
    """Short, growing re-check delays for a recording, never past the wait deadline."""
    grown: float = low * 1.5**checks
    return max(0.0, min(grown, high, left))
