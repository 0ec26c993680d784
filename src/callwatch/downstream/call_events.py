"""What every call event a subscriber receives says about its call, and each event's key (one
delivery per subscription and key: the same event fanned out twice is one delivery)."""

from typing import Any, Protocol

from callwatch.model.events import CallStatus

ASSEMBLED = "call.assembled"
ASSEMBLY_FAILED = "call.assembly_failed"
STATUS_CHANGED = "call.status_changed"
DELETED = "call.deleted"


class CallFacts(Protocol):
    """A call's row, or the columns of it a query selected."""

    @property
    def id(self) -> str: ...
    @property
    def provider_call_id(self) -> str: ...
    @property
    def source_id(self) -> str: ...
    @property
    def agent_id(self) -> str | None: ...
    @property
    def status(self) -> str | None: ...


FACT_COLUMNS = ("id", "provider_call_id", "source_id", "agent_id", "status")


def facts(call: CallFacts) -> dict[str, Any]:
    """What subscription filters can match on, in every call event's data."""
    return {
        "call_id": call.id,
        "provider_call_id": call.provider_call_id,
        "source_id": call.source_id,
        "agent_id": call.agent_id,
        "status": call.status,
    }


def key(event_type: str, call_id: str, status: str | None = None) -> str:
    if event_type == STATUS_CHANGED:
        return f"{event_type}:{call_id}:{status}"
    return f"{event_type}:{call_id}"


def keys_before_deletion(call_id: str) -> list[str]:
    """Every key a call's events could have had until it was deleted."""
    statuses: list[str | None] = [*CallStatus, None]
    return [
        key(ASSEMBLED, call_id),
        key(ASSEMBLY_FAILED, call_id),
        *(key(STATUS_CHANGED, call_id, status) for status in statuses),
    ]
