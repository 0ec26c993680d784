"""`callwatch key list|create|delete` and `callwatch org list` against the real API."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from callwatch.cli.main import main
from tests.conftest import ADMIN
from tests.factories import tenant


def run(client: TestClient, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--url", "http://testserver"], http=client)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cells(out: str) -> list[list[str]]:
    return [re.split(r" {2,}", line) for line in out.splitlines()]


def when(value: str | None) -> str:
    return "-" if value is None else value[:19].replace("T", " ")


def test_create_prints_the_key_once_and_list_shows_a_table_without_it(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = tenant(client, "acme")

    code, out, err = run(client, capsys, "key", "create", "grafana", "--api-key", acme.key)
    created = json.loads(out)
    listed = run(client, capsys, "key", "list", "--api-key", acme.key)

    assert (code, err) == (0, "Keep the API key: it is shown only once.\n")
    assert (created["name"], created["api_key"][:7]) == ("grafana", created["prefix"])
    api: list[dict[str, Any]] = client.get("/api/keys", headers=acme.headers).json()["items"]
    first, second = api
    assert listed[0] == 0
    assert cells(listed[1]) == [
        ["ID", "NAME", "PREFIX", "CREATED (UTC)", "LAST USED (UTC)"],
        [first["id"], "first key", acme.key[:7] + "…", when(first["created_at"]),
         when(first["last_used_at"])],
        [second["id"], "grafana", created["prefix"] + "…", when(second["created_at"]), "-"],
    ]  # fmt: skip
    assert created["api_key"] not in listed[1]


def test_list_json_is_the_api_reply(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    acme = tenant(client, "acme")

    code, out, _ = run(client, capsys, "key", "list", "--json", "--api-key", acme.key)

    assert (code, json.loads(out)) == (0, client.get("/api/keys", headers=acme.headers).json())


def test_delete_refuses_the_key_then_keeps_the_last_one(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = tenant(client, "acme")
    first_id = client.get("/api/keys", headers=acme.headers).json()["items"][0]["id"]
    _, out, _ = run(client, capsys, "key", "create", "ci", "--api-key", acme.key)
    second = json.loads(out)

    deleted = run(client, capsys, "key", "delete", first_id, "--api-key", second["api_key"])
    refused = run(client, capsys, "key", "list", "--api-key", acme.key)
    last = run(client, capsys, "key", "delete", second["id"], "--api-key", second["api_key"])

    assert deleted == (0, f"deleted {first_id}; it is refused from now on\n", "")
    assert refused == (1, "", "error: 401 Unauthorized: invalid API key\n")
    assert last == (
        1,
        "",
        "error: 409 Conflict: this is the org's last API key: create another "
        "(POST /api/keys) before deleting it\n",
    )


def test_org_list_is_a_table_with_the_admin_token(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = tenant(client, "acme")
    tenant(client, "globex")
    api = client.get("/api/admin/orgs", headers={"authorization": f"Bearer {ADMIN}"}).json()

    code, out, err = run(client, capsys, "org", "list", "--admin-token", ADMIN)
    as_json = run(client, capsys, "org", "list", "--json", "--admin-token", ADMIN)
    wrong = run(client, capsys, "org", "list", "--admin-token", acme.key)

    assert (code, err) == (0, "")
    acme_org, globex_org = api["items"]
    assert cells(out) == [
        ["ID", "NAME", "CREATED (UTC)", "SOURCES", "KEYS"],
        [acme_org["id"], "acme", when(acme_org["created_at"]), "1", "1"],
        [globex_org["id"], "globex", when(globex_org["created_at"]), "1", "1"],
    ]
    assert (as_json[0], json.loads(as_json[1])) == (0, api)
    assert wrong == (1, "", "error: 401 Unauthorized: invalid admin token\n")


def test_org_list_finds_the_token_up_generated_and_creates_none(
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("CALLWATCH_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("CALLWATCH_DATA_DIR", str(tmp_path / "data"))

    missing = run(client, capsys, "org", "list")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "admin_token").write_text(ADMIN + "\n")
    found = run(client, capsys, "org", "list", "--json")

    assert missing == (
        2,
        "",
        "callwatch: no admin token: pass --admin-token or set CALLWATCH_ADMIN_TOKEN "
        "(`callwatch up` prints it)\n",
    )
    assert (found[0], json.loads(found[1])) == (0, {"items": []})
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["admin_token", "data"]


def test_key_commands_need_an_org_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLWATCH_API_KEY", raising=False)

    code = main(["key", "list"])

    assert (code, capsys.readouterr().err) == (
        2,
        "callwatch: no API key: pass --api-key or set CALLWATCH_API_KEY "
        "(`callwatch org create` prints one)\n",
    )
