"""Replaying calls: their assembly starts again from all of their stored events (design.md §2).

Also the choice of quarantined events to send to the workers again (`--quarantined`)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from callwatch.calls import store
from callwatch.errors import InvalidInput, NotFound
from callwatch.orgs import tenancy
from callwatch.pipeline import quarantine
from callwatch.query.filters import CallFilters, DayOrTime
from callwatch.tables import Call, InboxEvent, Source

FINISHED = ("assembled", "failed")  # what a replay starts again; the other states are under way


class Selection(BaseModel):
    """What to replay: the calls named, every failed call, or every quarantined event; `org` and
    `source` narrow each. `since` and `until` bound when a call started or an event arrived."""

    model_config = ConfigDict(extra="forbid")

    call_ids: list[str] = Field(default_factory=list, description="callwatch or provider ids")
    failed: bool = False
    quarantined: bool = False
    org: str | None = Field(None, description="org name or id")
    source: str | None = Field(None, description="source id, or its name within `org`")
    since: DayOrTime | None = Field(None, description="started (received) at or after")
    until: DayOrTime | None = Field(None, description="started at or before; a date: that day")

    @model_validator(mode="after")
    def _one_way_to_choose(self) -> "Selection":
        # InvalidInput passes through pydantic untouched, so the message stays as written.
        if [bool(self.call_ids), self.failed, self.quarantined].count(True) != 1:
            raise InvalidInput(
                "give call ids, --failed or --quarantined, one of them", field="failed"
            )
        if self.call_ids and (self.since is not None or self.until is not None):
            raise InvalidInput(
                "--since and --until narrow --failed or --quarantined, not call ids", field="since"
            )
        start, end = self.started_range()
        if start is not None and end is not None and start >= end:
            raise InvalidInput("--since is not before --until", field="since")
        return self

    def started_range(self) -> tuple[datetime | None, datetime | None]:
        """Bounds on `started_at` as `calls list --date-from/--date-to` read them: `since` and
        `until` are included; a date `until` includes that whole day."""
        bounds = CallFilters.model_construct(date_from=self.since, date_to=self.until)
        return bounds.started_range()


@dataclass(frozen=True)
class Target:
    """A chosen call, as it was when it was chosen."""

    call_id: str
    provider_call_id: str
    org_id: str
    started_at: datetime
    ended_at: datetime | None  # when its final event says it ended; None: not ended yet
    assembly_state: str
    last_error: str | None
    has_events: bool


@dataclass(frozen=True)
class Plan:
    replay: list[Target]
    left_alone: dict[str, str]  # call id → why a replay does not touch it


_TARGET = (
    Call.id,
    Call.provider_call_id,
    Call.org_id,
    Call.started_at,
    Call.ended_at,
    Call.assembly_state,
    Call.assembly_last_error,
    select(InboxEvent.id).where(InboxEvent.call_id == Call.id).exists().label("has_events"),
)


def plan(session: Session, selection: Selection) -> Plan:
    """The calls `selection` chooses, as they are now; an id it cannot find is NotFound."""
    scope = _scope(session, selection, Call.org_id, Call.source_id, Call.started_at)
    if selection.call_ids:
        chosen = _named(session, selection.call_ids, scope, selection.org)
    else:
        chosen = _failed(session, scope)
    why = {
        target.call_id: _left_alone(target.ended_at, target.assembly_state, target.has_events)
        for target in chosen
    }
    return Plan(
        replay=[target for target in chosen if why[target.call_id] is None],
        left_alone={call_id: reason for call_id, reason in why.items() if reason is not None},
    )


def _left_alone(ended_at: datetime | None, assembly_state: str, has_events: bool) -> str | None:
    """Why a replay does not touch a call, if it does not."""
    if ended_at is None:
        return "it has not ended (no final event stored yet)"
    if assembly_state not in FINISHED:
        return f"its assembly is under way ({assembly_state})"
    if not has_events:
        return "it has no stored events to rebuild it from"
    return None


def replay(session: Session, call_ids: Sequence[str], now: datetime) -> list[str]:
    """Start these calls' assembly again; the ids to queue an assembly task for.

    Each call is made as if its events had just arrived: its record, details and the columns
    copied from them are dropped, its row is folded again from all of its stored events, and
    its assembly goes back to `pending` with no attempts, failures, error, lease or recording
    deadline, due now. A call that a replay would leave alone is, even if it was chosen before
    (a worker may have taken it since)."""
    ready, changed = [], []
    with session.no_autoflush:
        for call in _locked(session, call_ids):
            events = store.events_of(session, call.id)
            if _left_alone(call.ended_at, call.assembly_state, bool(events)) is not None:
                continue
            store.forget_record(call)
            _restart(call)
            changed.append(call)
            if store.refold(call, events, now).ready_to_assemble:
                ready.append(call.id)
    store.save(session, changed)  # the stats rollups move with the forgotten records
    return ready


def _restart(call: Call) -> None:
    call.assembly_state = "pending"
    call.assembly_attempts = 0
    call.assembly_failures = 0
    call.assembly_last_error = None
    call.assembly_lease_until = None
    call.assembly_next_at = None  # the fold makes an ended call due now, as a new one is
    call.assembled_at = None
    call.recording_deadline = None


def _locked(session: Session, call_ids: Sequence[str]) -> list[Call]:
    # In id order, in one statement, as the worker takes its locks.
    return list(
        session.scalars(
            select(Call).where(Call.id.in_(call_ids)).order_by(Call.id).with_for_update()
        )
    )


def quarantined(session: Session, selection: Selection) -> list[quarantine.Chosen]:
    """The quarantined events `selection` chooses (`since`/`until`: when they arrived)."""
    columns = (InboxEvent.org_id, InboxEvent.source_id, InboxEvent.received_at)
    return quarantine.chosen(session, _scope(session, selection, *columns))


def _scope(
    session: Session,
    selection: Selection,
    org: InstrumentedAttribute[str],
    source: InstrumentedAttribute[str],
    at: InstrumentedAttribute[datetime],
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    org_id = tenancy.get_org(session, selection.org).id if selection.org else None
    if org_id is not None:
        conditions.append(org == org_id)
    if selection.source:
        conditions.append(source == _source_id(session, selection.source, org_id))
    start, end = selection.started_range()
    if start is not None:
        conditions.append(at >= start)
    if end is not None:
        conditions.append(at < end)
    return conditions


def _source_id(session: Session, source: str, org_id: str | None) -> str:
    """A source by id, or by name within the org; never another org's."""
    if org_id is None:
        wanted = Source.id == source
    else:
        wanted = (Source.org_id == org_id) & ((Source.id == source) | (Source.name == source))
    found = session.scalar(select(Source.id).where(wanted))
    if found is None:
        raise NotFound(
            f"no source {source!r}{'' if org_id is None else ' in that org'} (give a source id, "
            "or its name with --org; `callwatch source list --org ORG` shows them)"
        )
    return found


def _failed(session: Session, scope: list[ColumnElement[bool]]) -> list[Target]:
    rows = session.execute(
        select(*_TARGET)
        .where(Call.assembly_state == "failed", *scope)
        .order_by(Call.started_at, Call.id)
    )
    return [Target(*row) for row in rows]


def _named(
    session: Session, names: Sequence[str], scope: list[ColumnElement[bool]], org: str | None
) -> list[Target]:
    """The calls named by callwatch id or provider call id, once each, in the order named."""
    found = [
        Target(*row)
        for row in session.execute(
            select(*_TARGET).where(
                or_(Call.id.in_(names), Call.provider_call_id.in_(names)), *scope
            )
        )
    ]
    chosen: dict[str, Target] = {}
    unknown = []
    for name in dict.fromkeys(names):
        matches = [target for target in found if target.call_id == name] or [
            target for target in found if target.provider_call_id == name
        ]
        if len(matches) > 1:
            raise InvalidInput(
                f"{name!r} is the provider call id of {len(matches)} calls "
                f"({', '.join(target.call_id for target in matches)}): name one by its "
                "callwatch id, or narrow with --org or --source"
            )
        if matches:
            chosen.setdefault(matches[0].call_id, matches[0])
        else:
            unknown.append(name)
    if unknown:
        where = f" in org {org!r}" if org else ""
        raise NotFound(
            f"no call {', '.join(map(repr, unknown))}{where} (give callwatch ids or provider "
            "call ids; `callwatch calls list` shows them); nothing was replayed"
        )
    return list(chosen.values())


# ---------------------------------------------------------------- for people


def line(target: Target) -> str:
    """One chosen call: ids, org, start (UTC), assembly state before the replay, last error."""
    started = target.started_at.strftime("%Y-%m-%d %H:%M:%S")
    parts = [target.call_id, target.provider_call_id, target.org_id, started, target.assembly_state]
    return "  ".join([*parts, target.last_error or ""]).rstrip()


def left_line(call_id: str, reason: str) -> str:
    return f"{call_id}: not replayed: {reason}"


def progress(done: int, total: int) -> str:
    return f"\rreplaying {done}/{total}"


def summary(replayed: int, left_alone: int, *, dry_run: bool) -> str:
    if dry_run:
        head = f"{_calls(replayed)} would be replayed (dry run: nothing changed)"
    elif replayed:
        head = f"replayed {_calls(replayed)}: back to pending, queued for assembly"
    else:
        head = "nothing replayed" if left_alone else "no calls to replay"
    return head + (f"; {_calls(left_alone)} left alone" if left_alone else "")


def quarantined_summary(sent: int, *, dry_run: bool) -> str:
    if dry_run:
        return f"{_events(sent)} would be sent to the workers again (dry run: nothing changed)"
    if not sent:
        return "no quarantined events to replay"
    return (
        f"sent {_events(sent)} to the workers again: each leaves the quarantine once it applies "
        "(`callwatch quarantine list` shows those still there)"
    )


def _events(count: int) -> str:
    return f"{count} quarantined event" + ("" if count == 1 else "s")


def _calls(count: int) -> str:
    return f"{count} call" if count == 1 else f"{count} calls"
