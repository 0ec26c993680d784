"""`callwatch calls list|get|stats` against the real API: whole tables, JSON and error lines."""

import json
import socket
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from callwatch.cli.main import main
from callwatch.model.records import Cost, Latency, Recording, Stats
from callwatch.runtime import Runtime
from tests.factories import T0, Tenant, add_call, add_source, tenant


def three_calls(client: TestClient, runtime: Runtime) -> Tenant:
    acme = tenant(client, "acme")
    backup = add_source(client, acme, "backup")
    add_call(runtime, acme, "c1")
    add_call(
        runtime,
        backup,
        "c2",
        started_at=T0 + timedelta(days=1),
        agent_id="b",
        campaign_id="spring",
        direction="inbound",
        channel="web",
        from_number="+15559990000",
        to_number="+15550001111",
        customer_number="+15559990000",
        status="failed",
        end_reason="error",
        answered_at=None,
        duration_s=10.0,
        recording=Recording(status="none"),
        latency=Latency(),
        cost=None,
    )
    add_call(
        runtime,
        acme,
        "c3",
        started_at=T0 + timedelta(days=2, hours=3, minutes=7),
        end_reason="agent_hangup",
        duration_s=200.0,
        latency=Latency(turn=Stats(p50=1000, p95=1500)),
        cost=Cost(total=0.0734, currency="EUR", llm=0.0734),
    )
    return acme


def run(
    client: TestClient, capsys: pytest.CaptureFixture[str], key: str, *argv: str
) -> tuple[int, str, str]:
    code = main([*argv, "--url", "http://testserver", "--api-key", key], http=client)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_is_a_table_newest_first_with_a_footer(
    client: TestClient, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = three_calls(client, runtime)

    code, out, err = run(client, capsys, acme.key, "calls", "list", "--limit", "2")

    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "STARTED (UTC)     ID  AGENT      STATUS     END REASON    DURATION        COST  RECORDING",
        "2026-11-03 15:07  c3  sales-bot  completed  agent_hangup      3:20  0.0734 EUR  available",
        "2026-11-02 12:00  c2  b          failed     error             0:10           -  none",
        "2 of 3 calls",
    ]


def test_list_json_is_the_api_page(
    client: TestClient, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = three_calls(client, runtime)

    code, out, _ = run(
        client, capsys, acme.key, "calls", "list", "--json", "--status", "completed", "--page", "2"
    )

    api = client.get(
        "/api/calls", params={"status": "completed", "page": "2"}, headers=acme.headers
    )
    assert (code, json.loads(out)) == (0, api.json())


def test_every_list_option_reaches_the_api(
    client: TestClient, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = three_calls(client, runtime)
    cases: dict[tuple[str, ...], list[str]] = {
        (): ["c3", "c2", "c1"],
        ("--status", "failed"): ["c2"],
        ("--status", "failed", "--status", "completed"): ["c3", "c2", "c1"],
        ("--agent-id", "b"): ["c2"],
        ("--campaign-id", "spring"): ["c2"],
        ("--source", "backup"): ["c2"],
        ("--direction", "inbound"): ["c2"],
        ("--channel", "web"): ["c2"],
        ("--customer-phone", "9990"): ["c2"],
        ("--search", "p-c1"): ["c1"],
        ("--date-from", "2026-11-02"): ["c3", "c2"],
        ("--date-to", "2026-11-01"): ["c1"],
        ("--min-duration", "100"): ["c3"],
        ("--max-duration", "30"): ["c2"],
        ("--end-reason", "error", "--end-reason", "agent_hangup"): ["c3", "c2"],
        ("--has-recording",): ["c3", "c1"],
        ("--no-recording",): ["c2"],
        ("--limit", "1", "--skip", "1"): ["c2"],
        ("--limit", "2", "--page", "2"): ["c1"],
    }

    def ids(options: tuple[str, ...]) -> list[str]:
        code, out, err = run(client, capsys, acme.key, "calls", "list", "--json", *options)
        assert (code, err) == (0, "")
        return [item["id"] for item in json.loads(out)["items"]]

    assert {options: ids(options) for options in cases} == cases


def test_get_shows_the_record_in_lines(
    client: TestClient, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = three_calls(client, runtime)

    code, out, err = run(client, capsys, acme.key, "calls", "get", "p-c1")

    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "call       c1  (generic p-c1, source main)",
        "agent      sales-bot (Sales bot)",
        "campaign   -",
        "direction  outbound phone",
        "numbers    +15550001111 -> +15550002222",
        "status     completed (user_hangup)",
        "started    2026-11-01 12:00:00 UTC",
        "answered   2026-11-01 12:00:05 UTC",
        "ended      2026-11-01 12:01:05 UTC",
        "duration   1:00",
        "latency    turn p50 850 ms, p95 1200 ms; first word 500 ms",
        "cost       0.1000 USD (llm 0.0500, telephony 0.0500)",
        "recording  available https://rec.example/1.wav",
        "summary    ok",
        "assembly   assembled, 1 attempt, at 2026-11-01 12:00:00 UTC",
        "timeline (UTC)",
        "  2026-11-01 12:00:00  completed  call.completed",
    ]


def test_get_json_is_the_api_record(
    client: TestClient, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = three_calls(client, runtime)

    code, out, _ = run(client, capsys, acme.key, "calls", "get", "c2", "--json")

    assert (code, json.loads(out)) == (0, client.get("/api/calls/c2", headers=acme.headers).json())


def test_stats_table_has_the_overall_row_then_each_group(
    client: TestClient, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = three_calls(client, runtime)

    code, out, err = run(client, capsys, acme.key, "calls", "stats", "--group-by", "agent")

    # durations 10, 60, 200: mean 90, p95 60 + 0.9 * 140 = 186; of 60, 200: 60 + 0.95 * 140 = 193
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "AGENT      CALLS  ANSWER RATE  COMPLETED  FAILED  DURATION MEAN  DURATION P95"
        "  TURN P50 MEAN  COST EUR  COST USD",
        "all            3        66.7%          2       1           1:30          3:06"
        "         925 ms    0.0734    0.1000",
        "b              1         0.0%          0       1           0:10          0:10"
        "              -         -         -",
        "sales-bot      2       100.0%          2       0           2:10          3:13"
        "         925 ms    0.0734    0.1000",
    ]


def test_stats_takes_the_filters_and_json_is_the_api_result(
    client: TestClient, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = three_calls(client, runtime)
    options = ("--source", "main", "--min-duration", "100", "--group-by", "day")

    code, out, _ = run(client, capsys, acme.key, "calls", "stats", *options, "--json")

    api = client.get(
        "/api/stats",
        params={"source": "main", "min_duration": "100", "group_by": "day"},
        headers=acme.headers,
    )
    assert (code, json.loads(out)) == (0, api.json())
    assert [group["key"] for group in api.json()["groups"]] == ["2026-11-03"]


def test_api_errors_are_one_line_and_exit_1(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = tenant(client, "acme")

    results = [
        run(client, capsys, acme.key, "calls", "list", "--limit", "0"),
        run(client, capsys, acme.key, "calls", "get", "nope"),
        run(client, capsys, acme.key, "calls", "stats", "--status", "dancing"),
        run(client, capsys, "cw_wrong", "calls", "list"),
    ]

    assert results == [
        (1, "", "error: 422 limit: Input should be greater than or equal to 1\n"),
        (1, "", "error: 404 Not found: no call 'nope'\n"),
        (
            1,
            "",
            "error: 422 status: Input should be 'queued', 'initiated', 'ringing', "
            "'in_progress', 'completed', 'failed', 'no_answer', 'busy' or 'canceled'\n",
        ),
        (1, "", "error: 401 Unauthorized: invalid API key\n"),
    ]


def test_a_missing_api_key_says_where_to_get_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLWATCH_API_KEY", raising=False)

    code = main(["calls", "list"])

    assert code == 2
    assert capsys.readouterr().err == (
        "callwatch: no API key: pass --api-key or set CALLWATCH_API_KEY "
        "(`callwatch org create` prints one)\n"
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_an_unreachable_server_is_named_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    public, direct = f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("CALLWATCH_API_KEY", "cw_from_env")
    monkeypatch.delenv("CALLWATCH_URL", raising=False)
    monkeypatch.setenv("CALLWATCH_PUBLIC_URL", public)

    first = main(["calls", "stats"]), capsys.readouterr().err
    monkeypatch.setenv("CALLWATCH_URL", direct)
    second = main(["calls", "get", "c1"]), capsys.readouterr().err

    assert [first, second] == [
        (1, f"error: cannot reach {public}: is `callwatch up` running?\n"),
        (1, f"error: cannot reach {direct}: is `callwatch up` running?\n"),
    ]


def test_a_table_fits_the_terminal_and_folds_cells_rather_than_cutting_them(
    client: TestClient,
    runtime: Runtime,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    acme = three_calls(client, runtime)
    monkeypatch.setenv("COLUMNS", "60")

    code, out, err = run(client, capsys, acme.key, "calls", "list")

    lines = out.splitlines()
    assert (code, err, lines[-1]) == (0, "", "3 of 3 calls")
    assert max(len(line) for line in lines) <= 60
    assert len(lines) > 5  # the header and rows folded onto more lines
    assert "…" not in out
    assert [f"c{n} " in out for n in (3, 2, 1)] == [True, True, True]


def test_a_cell_is_text_never_markup(
    client: TestClient, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = tenant(client, "acme")
    add_call(runtime, acme, "c-[bold]x[/bold]", agent_id="[red]agent[/red]")

    code, out, _ = run(client, capsys, acme.key, "calls", "list")

    assert code == 0
    assert out.splitlines()[1].split()[2:4] == ["c-[bold]x[/bold]", "[red]agent[/red]"]
