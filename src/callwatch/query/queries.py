"""Reading calls for the API: pages of summaries, batch lookups, a call's stored events."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema
from sqlalchemy import ColumnElement, Select, Text, cast, func, or_, select
from sqlalchemy.orm import Session

from callwatch.calls import store
from callwatch.query.filters import CallFilters, Paging
from callwatch.tables import Call, InboxEvent

NEWEST_FIRST = (Call.started_at.desc(), Call.id.desc())
COUNT_CAP = 10_000
# Records travel as stored JSON (no re-validation); the schema still names their shape.
RecordJson = Annotated[dict[str, Any], WithJsonSchema({"$ref": "#/components/schemas/CallRecord"})]


class ListQuery(CallFilters, Paging):
    include: list[Literal["transcript"]] = Field(default_factory=list)
    count: Literal["auto", "exact"] = Field(
        "auto", description=f"exact: count every match even past {COUNT_CAP:,} (slower)"
    )


class CallPage(BaseModel):
    items: list[RecordJson]
    total: int
    total_exact: bool = Field(
        description=f"false: over {COUNT_CAP:,} matched and `total` is an estimate (see `count`)"
    )
    skip: int
    limit: int
    page: int | None = None


class SearchBody(BaseModel):
    call_ids: list[str] = Field(min_length=1, max_length=100)


class SearchResult(BaseModel):
    items: list[RecordJson]
    missing: list[str]


class StoredEvent(BaseModel):
    id: str
    received_at: datetime
    content_type: str | None
    dedupe_key: str
    event: dict[str, Any]
    body: str


def record_json(session: Session, call: Call, *, transcript: bool = True) -> dict[str, Any]:
    """The call's record as JSON: the stored one once assembled, else built from its events."""
    if call.record is not None:
        record = dict(call.record)
    else:
        record = store.record_of(session, call).model_dump(mode="json")
    if not transcript:
        record.pop("transcript", None)
    return record


@dataclass(frozen=True)
class RawPage:
    """A page whose records are JSON text straight from the database, never parsed here."""

    items: list[str]
    meta: CallPage  # the rest of the page, its `items` left empty

    def json(self) -> bytes:
        rest = self.meta.model_dump_json(exclude={"items"})
        return f'{{"items":[{",".join(self.items)}],{rest[1:]}'.encode()


def page(session: Session, org_id: str, query: ListQuery) -> RawPage:
    """Newest first. The page's ids come from the (org, started_at, id) index alone, so a deep
    `skip` walks index entries, not rows, and only the `limit` rows found are read."""
    where = query.where(org_id)
    total, exact = count(session, where, exact=query.count == "exact")
    ids = (
        select(Call.id)
        .where(*where)
        .order_by(*NEWEST_FIRST)
        .offset(query.offset)
        .limit(query.limit)
    )
    transcript = "transcript" in query.include
    rows = session.execute(
        select(Call.id, record_text(session, transcript=transcript))
        .where(Call.id.in_(ids))
        .order_by(*NEWEST_FIRST)
    )
    items = [
        text if text is not None else built_record(session, call_id, transcript=transcript)
        for call_id, text in rows
    ]
    meta = CallPage(
        items=[],
        total=total,
        total_exact=exact,
        skip=query.offset,
        limit=query.limit,
        page=query.page,
    )
    return RawPage(items, meta)


def count(session: Session, where: list[ColumnElement[bool]], *, exact: bool) -> tuple[int, bool]:
    """How many calls match: exact up to COUNT_CAP, beyond that Postgres's planner estimate.

    Counting a million index entries takes ~200 ms here, whatever the index; past the cap
    nobody pages to the end, and `count=exact` still asks for the slow, exact figure.
    """
    if exact or session.get_bind().dialect.name != "postgresql":
        return session.scalar(select(func.count()).select_from(Call).where(*where)) or 0, True
    capped = select(Call.id).where(*where).limit(COUNT_CAP + 1).subquery()
    found = session.scalar(select(func.count()).select_from(capped)) or 0
    if found <= COUNT_CAP:
        return found, True
    return max(_planner_rows(session, select(Call.id).where(*where)), found), False


def _planner_rows(session: Session, statement: Select[Any]) -> int:
    compiled = statement.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    plan = (
        session.connection()
        .exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params)
        .scalar_one()
    )
    return int(plan[0]["Plan"]["Plan Rows"])


def record_text(session: Session, *, transcript: bool) -> ColumnElement[str | None]:
    """The stored record as JSON text, rendered by the database, with or without transcript."""
    if transcript:
        return cast(Call.record, Text)
    if session.get_bind().dialect.name == "postgresql":
        return cast(Call.record.op("-")("transcript"), Text)
    return func.json_remove(Call.record, "$.transcript")


def built_record(session: Session, call_id: str, *, transcript: bool) -> str:
    """The record of a call still being assembled, from its events."""
    call = session.get_one(Call, call_id)
    return json.dumps(record_json(session, call, transcript=transcript), separators=(",", ":"))


def search(session: Session, org_id: str, call_ids: Sequence[str]) -> SearchResult:
    """Full records in the order asked, by callwatch or provider id; the rest are `missing`."""
    wanted = list(dict.fromkeys(call_ids))
    found = session.scalars(
        select(Call)
        .where(Call.org_id == org_id, or_(Call.id.in_(wanted), Call.provider_call_id.in_(wanted)))
        .order_by(Call.started_at)
    )
    by_key: dict[str, Call] = {}
    for call in found:  # the newest call wins a provider id used twice (as `calls.find`)
        by_key[call.id] = by_key[call.provider_call_id] = call
    return SearchResult(
        items=[record_json(session, by_key[key]) for key in wanted if key in by_key],
        missing=[key for key in wanted if key not in by_key],
    )


def events(session: Session, org_id: str, call_id: str) -> list[StoredEvent]:
    """The raw events stored for one of the org's calls, oldest first."""
    call = store.find(session, org_id, call_id)
    rows = session.scalars(
        select(InboxEvent)
        .where(InboxEvent.call_id == call.id)
        .order_by(InboxEvent.received_at, InboxEvent.id)
    )
    return [
        StoredEvent(
            id=row.id,
            received_at=row.received_at,
            content_type=row.content_type,
            dedupe_key=row.dedupe_key,
            event=row.event,
            body=row.raw_body,
        )
        for row in rows
    ]
