"""GET /api/calls/export: every matching call, streamed as CSV or NDJSON."""

import csv
import io
import json
from datetime import timedelta

from starlette.testclient import TestClient

from callwatch.runtime import Runtime
from tests.factories import T0, add_call, tenant


def test_ndjson_is_the_full_records_newest_first_with_the_filters(
    client: TestClient, runtime: Runtime
) -> None:
    acme = tenant(client, "acme")
    stored = [
        add_call(runtime, acme, f"c{n}", started_at=T0 + timedelta(minutes=n), agent_id=agent)
        for n, agent in enumerate(["a", "b", "a"])
    ]

    response = client.get("/api/calls/export?format=ndjson&agent_id=a", headers=acme.headers)

    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines == [stored[2].model_dump(mode="json"), stored[0].model_dump(mode="json")]


def test_csv_has_a_header_and_one_row_per_call_past_a_chunk(
    client: TestClient, runtime: Runtime
) -> None:
    acme = tenant(client, "acme")
    count = 1005  # more than one 1000-row chunk
    for n in range(count):
        add_call(runtime, acme, f"c{n:04d}", started_at=T0 + timedelta(seconds=n))

    response = client.get("/api/calls/export?format=csv", headers=acme.headers)

    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert len(rows) == count
    assert {
        key: rows[0][key] for key in ("id", "source", "status", "duration_s", "cost_total")
    } == {
        "id": "c1004",
        "source": "main",
        "status": "completed",
        "duration_s": "60.0",
        "cost_total": "0.1",
    }
    assert rows[0]["started_at"] == (T0 + timedelta(seconds=1004)).isoformat().replace(
        "+00:00", "Z"
    )


def test_unknown_format_is_a_422(client: TestClient) -> None:
    acme = tenant(client, "acme")

    response = client.get("/api/calls/export?format=xlsx", headers=acme.headers)

    assert (response.status_code, response.json()["field"]) == (422, "format")
