"""Work a transaction leaves for after its commit: deliveries to send, stream entries to add,
recordings to archive."""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StreamEntry:
    """One entry for an ops stream (`callwatch:calls`, `callwatch:alerts`)."""

    stream: str
    type: str
    org_id: str
    call_id: str | None
    payload: dict[str, Any]


@dataclass
class Effects:
    deliveries: list[str] = field(default_factory=list)  # delivery ids to send now
    entries: list[StreamEntry] = field(default_factory=list)
    archives: list[str] = field(default_factory=list)  # call ids whose recording to archive now

    def add(self, other: "Effects") -> None:
        self.deliveries += other.deliveries
        self.entries += other.entries
        self.archives += other.archives
