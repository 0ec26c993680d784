"""The overview: the window's figures from the stats functions, per agent (sorted) and source."""

import re
from datetime import timedelta

from starlette.testclient import TestClient

from callwatch.dashboard.overview import Summary, sorted_rows
from callwatch.model.records import Cost
from callwatch.runtime import Runtime, utcnow
from tests.dashboard.signing_in import sign_in
from tests.factories import add_call, add_source, tenant


def _agents(html: str) -> list[tuple[str, str]]:
    """(agent, calls) of the agents table's rows, in order."""
    table = html.split('aria-labelledby="agents-h"')[1]
    return re.findall(
        r'<tr><td><a href="/calls\?agent_id=[^"]*">([^<]*)</a></td>'
        r'<td class="num">(\d+)</td>',
        table.split("</table>")[0],
    )


def test_the_overview_counts_the_window(client: TestClient, runtime: Runtime) -> None:
    acme = tenant(client, "acme")
    second = add_source(client, acme, "second")
    now = utcnow()
    add_call(runtime, acme, "call_1", agent_id="sales", started_at=now - timedelta(hours=1))
    add_call(runtime, acme, "call_2", agent_id="sales", started_at=now - timedelta(hours=2))
    add_call(
        runtime,
        second,
        "call_3",
        agent_id="support",
        status="failed",
        answered_at=None,
        cost=Cost(total=0.5, currency="USD"),
        started_at=now - timedelta(hours=3),
    )
    add_call(runtime, acme, "call_old", agent_id="old", started_at=now - timedelta(days=3))
    sign_in(client, acme.key)

    day = client.get("/")
    week = client.get("/?window=7d&sort=key&order=asc")

    assert '<dd id="tile-calls">3</dd>' in day.text
    assert "<dd>66.7 %</dd>" in day.text  # answered
    assert "<dd>33.3 %</dd>" in day.text  # failed
    assert "<dd>0.7000 USD</dd>" in day.text  # cost
    assert _agents(day.text) == [("sales", "2"), ("support", "1")]
    assert _agents(week.text) == [("old", "1"), ("sales", "2"), ("support", "1")]
    assert '<a href="/calls?source=second">second</a>' in day.text
    assert day.text.count('<svg role="img"') == 3  # calls, latency and cost per day
    assert "Calls per day" in day.text
    assert "Calls per week" in client.get("/?window=90d").text


def _row(key: str, calls: int, p95: float | None) -> Summary:
    return Summary(key, calls, None, None, None, p95, None, None, None, None)


def test_rows_sort_either_way_with_missing_figures_last() -> None:
    rows = [_row("a", 3, None), _row("b", 1, 900.0), _row("c", 2, 300.0)]
    assert [row.key for row in sorted_rows(rows, "p95", True)] == ["b", "c", "a"]
    assert [row.key for row in sorted_rows(rows, "p95", False)] == ["c", "b", "a"]
    assert [row.key for row in sorted_rows(rows, "calls", True)] == ["a", "c", "b"]
    assert [row.key for row in sorted_rows(rows, "nonsense", False)] == ["b", "c", "a"]
