"""`callwatch subscription …`, `alert-rule …` and `calls export` against the real API."""

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from callwatch.alerts.windows import Metric
from callwatch.cli import alert_rules, subscriptions
from callwatch.cli.main import main
from callwatch.downstream.subscriptions import EVENT_TYPES
from callwatch.runtime import Runtime
from tests.cli.test_lookups import three_calls
from tests.factories import tenant

ENDPOINT = "http://127.0.0.1:9/hook"


def run(
    client: TestClient, capsys: pytest.CaptureFixture[str], key: str, *argv: str
) -> tuple[int, str, str]:
    code = main([*argv, "--url", "http://testserver", "--api-key", key], http=client)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_clis_names_are_the_apis() -> None:
    from typing import get_args

    assert (EVENT_TYPES, get_args(Metric)) == (subscriptions.EVENT_TYPES, alert_rules.METRICS)


def test_a_subscription_from_creation_to_deletion(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = tenant(client, "acme")
    code, out, err = run(
        client, capsys, acme.key, "subscription", "create", "--endpoint", ENDPOINT,
        "--event", "call.assembled", "--agent-id", "bot", "--description", "crm",
    )  # fmt: skip
    created = json.loads(out)
    assert (code, err) == (0, "Keep the secret (whsec_…): it is shown only once.\n")
    assert created["secret"].startswith("whsec_")
    sid = created["id"]
    expected = {key: value for key, value in created.items() if key != "secret"}
    assert (created["url"], created["event_types"], created["filters"]) == (
        ENDPOINT,
        ["call.assembled"],
        {"agent_id": ["bot"]},
    )

    assert json.loads(run(client, capsys, acme.key, "subscription", "get", sid)[1]) == expected
    code, out, _ = run(client, capsys, acme.key, "subscription", "list")
    assert (code, out.splitlines()) == (
        0,
        [
            f"ID{' ' * (len(sid) - 2)}  URL{' ' * (len(ENDPOINT) - 3)}  EVENTS          STATE"
            "    DESCRIPTION",
            f"{sid}  {ENDPOINT}  call.assembled  enabled  crm",
            "1 subscription",
        ],
    )

    code, out, _ = run(client, capsys, acme.key, "subscription", "update", sid, "--disable")
    assert (code, json.loads(out)["enabled"]) == (0, False)
    code, out, err = run(client, capsys, acme.key, "subscription", "rotate-secret", sid)
    rotated = json.loads(out)
    assert (code, err) == (0, "Keep the new secret: it is shown only once.\n")
    assert rotated["secret"] != created["secret"]

    code, out, _ = run(client, capsys, acme.key, "subscription", "delete", sid)
    assert (code, out) == (0, f"deleted subscription {sid}\n")
    assert run(client, capsys, acme.key, "subscription", "list") == (0, "0 subscriptions\n", "")
    code, out, err = run(client, capsys, acme.key, "subscription", "delete", sid)
    assert (code, out, err.startswith("error: 404 ")) == (1, "", True)


def test_a_subscription_update_needs_a_change(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = tenant(client, "acme")
    assert run(client, capsys, acme.key, "subscription", "update", "sub_x") == (
        2,
        "",
        "error: nothing to change: pass at least one option (see --help)\n",
    )


def test_a_subscriptions_rate_limit_is_set_changed_and_lifted(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = tenant(client, "acme")
    code, out, _ = run(
        client, capsys, acme.key, "subscription", "create", "--endpoint", ENDPOINT,
        "--rate-limit", "5/10",
    )  # fmt: skip
    sid = json.loads(out)["id"]

    def update(*argv: str) -> object:
        code, out, _ = run(client, capsys, acme.key, "subscription", "update", sid, *argv)
        return code, json.loads(out)["rate_limit"]

    assert (code, json.loads(out)["rate_limit"]) == (0, {"per_second": 5.0, "burst": 10})
    assert update("--rate-limit", "2.5") == (0, {"per_second": 2.5, "burst": 3})
    assert update("--rate-limit", "") == (0, None)
    with pytest.raises(SystemExit) as bad:
        run(client, capsys, acme.key, "subscription", "update", sid, "--rate-limit", "x/y")
    assert bad.value.code == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith(
            "argument --rate-limit: 'x/y': give requests per second, and optionally /burst "
            "(e.g. 50/100)"
        )
    )


def test_alert_rules_are_created_listed_and_deleted(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = tenant(client, "acme")
    code, out, _ = run(
        client, capsys, acme.key, "alert-rule", "create", "--name", "slow",
        "--expression", "latency.turn.p95 > 1500", "--agent-id", "bot",
    )  # fmt: skip
    call_rule = json.loads(out)
    assert (code, call_rule["kind"], call_rule["agent_id"]) == (0, "call", "bot")
    code, out, _ = run(
        client, capsys, acme.key, "alert-rule", "create", "--name", "failing",
        "--metric", "failure_rate", "--minutes", "15", "--op", ">", "--threshold", "0.2",
    )  # fmt: skip
    window_rule = json.loads(out)
    assert (code, window_rule["window"]["metric"], window_rule["enabled"]) == (
        0,
        "failure_rate",
        True,
    )

    code, out, _ = run(client, capsys, acme.key, "alert-rule", "list")
    listed = client.get("/api/alert-rules", headers=acme.headers).json()["items"]
    rows = [line.split("  ")[0] for line in out.splitlines()[1:-1]]
    assert (code, rows, out.splitlines()[-1]) == (
        0,
        [item["id"] for item in listed],
        "2 alert rules",
    )
    assert sorted(item["id"] for item in listed) == sorted([call_rule["id"], window_rule["id"]])

    code, out, _ = run(client, capsys, acme.key, "alert-rule", "delete", call_rule["id"])
    assert (code, out) == (0, f"deleted alert rule {call_rule['id']} and its alerts\n")
    code, _, err = run(
        client, capsys, acme.key, "alert-rule", "create", "--name", "x", "--metric", "answer_rate"
    )
    assert (code, err.startswith("error: 422 ")) == (1, True)


def test_export_streams_the_apis_bytes_with_the_filters(
    client: TestClient, runtime: Runtime, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    acme = three_calls(client, runtime)
    code = main(
        ["calls", "export", "--format", "csv", "--status", "failed",
         "--url", "http://testserver", "--api-key", acme.key],
        http=client,
    )  # fmt: skip
    api = client.get(
        "/api/calls/export", params={"format": "csv", "status": "failed"}, headers=acme.headers
    )
    out = capsysbinary.readouterr().out
    assert (code, out) == (0, api.content)
    assert len(out.splitlines()) == 2  # the header and c2


def test_export_to_a_file(
    client: TestClient,
    runtime: Runtime,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    acme = three_calls(client, runtime)
    target = tmp_path / "calls.ndjson"

    code, out, err = run(client, capsys, acme.key, "calls", "export", "-o", str(target))

    api = client.get("/api/calls/export", headers=acme.headers)
    written = target.read_bytes()
    assert (code, out, err, written) == (
        0,
        "",
        f"{len(api.content)} bytes written to {target}\n",
        api.content,
    )
    assert [json.loads(line)["id"] for line in written.splitlines()] == ["c3", "c2", "c1"]


def test_an_export_error_is_one_line(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = tenant(client, "acme")
    code, out, err = run(client, capsys, acme.key, "calls", "export", "--date-from", "soon")
    assert (code, out, err.count("\n"), err.startswith("error: 422 date_from")) == (
        1,
        "",
        1,
        True,
    )
