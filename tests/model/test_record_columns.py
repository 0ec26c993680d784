"""The record columns the model lists agree with the `calls` table that holds them."""

import types
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest

from callwatch.model.record_columns import RECORD_COLUMNS, RecordColumn
from callwatch.model.records import (
    Assembly,
    CallRecord,
    Cost,
    Latency,
    Recording,
    Stats,
)
from callwatch.tables import Call

TABLE = Call.__table__.columns


def _type_of(column: RecordColumn) -> tuple[type, bool]:
    """The type of the record field a column copies, and whether it (or a model on the way)
    may be None."""
    current: Any = CallRecord
    optional = False
    for name in column.path:
        if name in current.model_fields:
            annotation = current.model_fields[name].annotation
        else:
            annotation = get_type_hints(getattr(current, name).fget)["return"]
        current, maybe_none = _unwrap(annotation)
        optional = optional or maybe_none
    return current, optional


def _unwrap(annotation: Any) -> tuple[type, bool]:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        assert len(members) == 1, annotation
        return _unwrap(members[0])[0], True
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin is Literal:
        return type(get_args(annotation)[0]), False
    assert isinstance(annotation, type), annotation
    return annotation, False


@pytest.mark.parametrize("column", RECORD_COLUMNS, ids=lambda column: column.name)
def test_each_column_holds_the_type_of_its_record_field(column: RecordColumn) -> None:
    assert column.name in TABLE, f"tables.Call has no column {column.name}"
    field_type, optional = _type_of(column)
    table_column = TABLE[column.name]

    assert issubclass(field_type, table_column.type.python_type)
    assert table_column.nullable or not optional
    if not column.from_events:
        assert table_column.nullable or column.without_record is not None


def test_the_columns_are_listed_once_and_leave_the_call_identity_alone() -> None:
    names = [column.name for column in RECORD_COLUMNS]

    assert len(names) == len(set(names))
    assert not {"id", "org_id", "source_id", "provider", "provider_call_id"} & set(names)


def test_a_column_reads_its_field_and_none_past_an_absent_model() -> None:
    started = datetime(2026, 1, 2, tzinfo=UTC)
    record = CallRecord(
        id="call_1",
        org_id="org_1",
        source="main",
        provider="vapi",
        provider_call_id="p1",
        answered_at=started,
        recording=Recording(status="available", url="https://example.com/r.wav"),
        latency=Latency(turn=Stats(p50=800.0), time_to_first_word_ms=500.0),
        cost=Cost(total=0.1),
        assembly=Assembly(state="assembled", attempts=1),
    )
    values = {column.name: column.read(record) for column in RECORD_COLUMNS}

    assert values["answered_at"] == started
    assert values["has_recording"] is True
    assert values["cost_total"] == 0.1
    assert values["cost_currency"] is None
    assert values["latency_turn_p50_ms"] == 800.0
    assert values["time_to_first_word_ms"] == 500.0
    bare = record.model_copy(update={"cost": None, "latency": Latency()})
    assert RecordColumn("cost_llm", "cost.llm").read(bare) is None
    assert RecordColumn("latency_turn_p95_ms", "latency.turn.p95").read(bare) is None
