"""The call as data: events, the record, endings and per-call metrics. Pure: no I/O, no clock."""
