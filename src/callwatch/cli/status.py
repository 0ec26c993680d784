"""`callwatch up`'s live status line: what came in and what became of it, read from the database
every STATUS_EVERY_S, drawn by rich in place of the processes' log lines (those go to a file)."""

from dataclasses import dataclass
from datetime import datetime
from typing import IO, Self

from rich.console import Console
from rich.live import Live
from rich.text import Text
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker

from callwatch.db import transaction
from callwatch.errors import StoreUnavailable
from callwatch.tables import Call, InboxEvent

STATUS_EVERY_S = 2.0
UNBOUNDED = 10_000  # away from a terminal nothing is cut
UNFINISHED = ("pending", "fetching", "awaiting_recording")


@dataclass(frozen=True)
class Counts:
    """Since `up` started, but `backlog`: everything still waiting, whenever it came."""

    received: int  # webhook events stored
    assembled: int  # calls assembled into a record
    failed: int  # calls whose assembly failed, and events quarantined
    backlog: int  # events not yet applied, and calls not yet assembled

    def line(self) -> str:
        return (
            f"{self.received} events received · {self.assembled} calls assembled · "
            f"{self.backlog} waiting · {self.failed} failed"
        )


def read(sessions: sessionmaker[Session], since: datetime) -> Counts | None:
    """None when the database does not answer (the line says so instead)."""
    waiting = InboxEvent.processed_at.is_(None) & InboxEvent.quarantined_at.is_(None)
    try:
        with transaction(sessions) as session:

            def count(*where: ColumnElement[bool]) -> int:
                return int(session.scalar(select(func.count()).where(*where)) or 0)

            return Counts(
                received=count(InboxEvent.received_at >= since),
                assembled=count(Call.assembly_state == "assembled", Call.assembled_at >= since),
                failed=count(Call.assembly_state == "failed", Call.created_at >= since)
                + count(InboxEvent.quarantined_at >= since),
                backlog=count(waiting) + count(Call.assembly_state.in_(UNFINISHED)),
            )
    except StoreUnavailable:
        return None


class StatusLine:
    """One line redrawn in place on a terminal; elsewhere (a pipe, a file): the last, at the end."""

    def __init__(self, out: IO[str]) -> None:
        self._console = Console(file=out, highlight=False, markup=False, emoji=False)
        if not self._console.is_terminal:
            self._console.width = UNBOUNDED
        self._live = Live(Text("starting…"), console=self._console, auto_refresh=False)

    def show(self, counts: Counts | None, extra: str = "") -> None:
        text = "the database does not answer" if counts is None else counts.line()
        line = " · ".join(part for part in (text, extra) if part)
        # One line on a terminal, cut to its width: a wrapped line would scroll the banner away.
        self._live.update(Text(line, no_wrap=True, overflow="ellipsis"), refresh=True)

    def __enter__(self) -> Self:
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.stop()
        if not self._console.is_terminal:  # rich ends the line on a terminal only
            self._console.line()
