"""The durable inbox: each received event stored once per (source, dedupe key), in batches."""

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.orm import Session

from callwatch.db import insert_ignore, json_recordset
from callwatch.model.events import CallEvent
from callwatch.tables import InboxEvent


@dataclasses.dataclass(slots=True)
class InboxRow:
    """What intake stores for one event (a dataclass: built typed already, nothing to validate)."""

    id: str
    org_id: str
    source_id: str
    dedupe_key: str
    provider_call_id: str
    event: CallEvent
    raw_body: str
    content_type: str
    received_at: datetime
    due_at: datetime
    attempts: int = 0


ROW_JSON = TypeAdapter(InboxRow)


def store(session: Session, rows: Sequence[InboxRow]) -> set[str]:
    """Insert rows, skipping (source, dedupe key) pairs already stored; returns the new ids."""
    if not rows:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        return set(session.scalars(_PG_INSERT, {"rows": batch_json(rows).decode()}))
    statement = insert_ignore(session, InboxEvent.__table__)  # type: ignore[arg-type]
    values = [
        {field.name: getattr(row, field.name) for field in dataclasses.fields(row)}
        | {"event": row.event.model_dump(mode="json")}
        for row in rows
    ]
    return set(session.scalars(statement.returning(InboxEvent.id), values))


def batch_json(rows: Sequence[InboxRow]) -> bytes:
    return b"[" + b",".join(ROW_JSON.dump_json(row) for row in rows) + b"]"


# On Postgres a batch goes in as one JSON document (`db.json_recordset`).
_PG_TYPES = {
    "id": "text",
    "org_id": "text",
    "source_id": "text",
    "dedupe_key": "text",
    "provider_call_id": "text",
    "event": "jsonb",
    "raw_body": "text",
    "content_type": "text",
    "received_at": "timestamptz",
    "due_at": "timestamptz",
    "attempts": "int",
}


def _pg_insert(rows: str) -> str:
    return (
        f"INSERT INTO inbox ({', '.join(_PG_TYPES)}) "
        f"SELECT * FROM {json_recordset(rows, _PG_TYPES)} "
        "ON CONFLICT DO NOTHING RETURNING id"
    )


PG_INSERT_SQL = _pg_insert("$1")  # for libpq, the batch JSON as its one parameter
_PG_INSERT = text(_pg_insert(":rows"))


def backlog(session: Session, org_id: str) -> dict[str, int]:
    """The org's events stored but neither applied nor quarantined yet, by source id (the
    pending rows: ix_inbox_pending holds only them)."""
    rows = session.execute(
        text(
            "SELECT source_id, count(*) FROM inbox WHERE org_id = :org_id"
            " AND processed_at IS NULL AND quarantined_at IS NULL GROUP BY source_id"
        ),
        {"org_id": org_id},
    )
    return {source_id: count for source_id, count in rows}
