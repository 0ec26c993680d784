"""Streaming every call that matches the filters as CSV or NDJSON, in constant memory."""

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callwatch.db import transaction
from callwatch.model.record_columns import RECORD_COLUMNS
from callwatch.query.filters import CallFilters
from callwatch.query.queries import NEWEST_FIRST, built_record, record_text
from callwatch.tables import Call, Source

CHUNK = 1000  # rows per database round trip and per piece of the response

_COPIED = tuple(column.name for column in RECORD_COLUMNS)
_ANSWERED = _COPIED.index("answered_at")
# The header is published, so its order holds: the row's identity, the record's copies with the
# call's times together (`started_at` and `ended_at` come from the events alone), then assembly.
CSV_COLUMNS = (
    "id",
    "provider_call_id",
    "source",
    "provider",
    *_COPIED[:_ANSWERED],
    "started_at",
    "answered_at",
    "ended_at",
    *_COPIED[_ANSWERED + 1 :],
    "assembly_state",
)
_ROW_COLUMNS = [getattr(Call, name) for name in CSV_COLUMNS if name != "source"]


class ExportQuery(CallFilters):
    format: Literal["csv", "ndjson"] = Field("ndjson", description="ndjson: full records")


def media_type(query: ExportQuery) -> str:
    return "text/csv; charset=utf-8" if query.format == "csv" else "application/x-ndjson"


def stream(sessions: sessionmaker[Session], org_id: str, query: ExportQuery) -> Iterator[bytes]:
    """Chunks of the export, newest call first; the read runs on a server-side cursor."""
    with transaction(sessions) as session:
        where = query.where(org_id)
        if query.format == "csv":
            yield from _csv(session, org_id, where)
        else:
            yield from _ndjson(session, where)


def _csv(session: Session, org_id: str, where: list[Any]) -> Iterator[bytes]:
    names = dict(
        session.execute(select(Source.id, Source.name).where(Source.org_id == org_id)).all()
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    rows = session.execute(
        select(Call.source_id, *_ROW_COLUMNS)
        .where(*where)
        .order_by(*NEWEST_FIRST)
        .execution_options(yield_per=CHUNK)
    )
    for count, (source_id, *values) in enumerate(rows, start=1):
        cells = [_cell(value) for value in values]
        cells.insert(CSV_COLUMNS.index("source"), names.get(source_id, ""))
        writer.writerow(cells)
        if count % CHUNK == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def _ndjson(session: Session, where: list[Any]) -> Iterator[bytes]:
    rows = session.execute(
        select(Call.id, record_text(session, transcript=True))
        .where(*where)
        .order_by(*NEWEST_FIRST)
        .execution_options(yield_per=CHUNK)
    )
    lines: list[str] = []
    for call_id, text in rows:
        lines.append(text if text is not None else built_record(session, call_id, transcript=True))
        if len(lines) == CHUNK:
            yield ("\n".join(lines) + "\n").encode()
            lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode()
