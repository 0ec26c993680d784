"""The record fields a call's row keeps copies of, so queries can filter, sort and aggregate on
them (the record stays the truth; design.md §7).

Adding one: a field of the record, an entry here, its column on `tables.Call` and a migration.
The calls store copies and forgets the entries, the CSV export lists them, and
tests/model/test_record_columns.py checks them against the table.
"""

from dataclasses import dataclass
from typing import Any

from callwatch.model.records import CallRecord


@dataclass(frozen=True)
class RecordColumn:
    name: str  # the column of `calls`
    field: str = ""  # the record's field, dotted into nested models; the column's name if empty
    # The events set it too, before there is a record (`calls.store`), so it outlives one.
    from_events: bool = False
    without_record: bool | None = None  # what a record-only column holds while there is none

    @property
    def path(self) -> tuple[str, ...]:
        return tuple((self.field or self.name).split("."))

    def read(self, record: CallRecord) -> Any:
        """The field's value in `record`, None when a model on the way is absent."""
        value: Any = record
        for name in self.path:
            if value is None:
                return None
            value = getattr(value, name)
        return value


# In the CSV export's order (query/export.py).
RECORD_COLUMNS = (
    RecordColumn("agent_id", from_events=True),
    RecordColumn("campaign_id", from_events=True),
    RecordColumn("direction", from_events=True),
    RecordColumn("channel", from_events=True),
    RecordColumn("from_number", from_events=True),
    RecordColumn("to_number", from_events=True),
    RecordColumn("customer_number", from_events=True),
    RecordColumn("status", from_events=True),
    RecordColumn("end_reason"),
    RecordColumn("answered_at", from_events=True),
    RecordColumn("duration_s"),
    RecordColumn("billed_duration_s"),
    RecordColumn("has_recording", without_record=False),
    RecordColumn("cost_total", "cost.total"),
    RecordColumn("cost_currency", "cost.currency"),
    RecordColumn("cost_llm", "cost.llm"),
    RecordColumn("cost_stt", "cost.stt"),
    RecordColumn("cost_tts", "cost.tts"),
    RecordColumn("cost_telephony", "cost.telephony"),
    RecordColumn("cost_platform", "cost.platform"),
    RecordColumn("latency_turn_p50_ms", "latency.turn.p50"),
    RecordColumn("latency_turn_p95_ms", "latency.turn.p95"),
    RecordColumn("time_to_first_word_ms", "latency.time_to_first_word_ms"),
)
