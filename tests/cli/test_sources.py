"""`callwatch source get|edit|delete|rotate-token|rotate-secret` against the real API."""

import json

import pytest
from starlette.testclient import TestClient

from callwatch.cli.main import main
from callwatch.settings import Settings
from tests.conftest import create_org, create_source
from tests.orgs.test_sources import auth, send


def run(
    client: TestClient, capsys: pytest.CaptureFixture[str], key: str, *argv: str
) -> tuple[int, str, str]:
    code = main(["source", *argv, "--url", "http://testserver", "--api-key", key], http=client)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_get_prints_the_source(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    key = create_org(client)
    source = create_source(client, key, settings={"detail_url": "http://127.0.0.1:9/c/{call_id}"})

    code, out, err = run(client, capsys, key, "get", source["id"])

    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{source['id']}  gen  (generic, enabled)",
        f"webhook URL: {source['webhook_url']}",
        "detail_url: http://127.0.0.1:9/c/{call_id}",
    ]


def test_get_as_json_is_the_apis_reply(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    key = create_org(client)
    source = create_source(client, key)

    code, out, _ = run(client, capsys, key, "get", source["id"], "--json")

    assert (code, json.loads(out)) == (
        0,
        client.get(f"/api/sources/{source['id']}", headers=auth(key)).json(),
    )


def test_edit_changes_what_its_options_say(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    key = create_org(client)
    source = create_source(client, key, settings={"allowed_ips": ["10.0.0.1"]})

    code, out, err = run(
        client,
        capsys,
        key,
        "edit",
        source["id"],
        "--name",
        "renamed",
        "--disable",
        "--api-base-url",
        "http://127.0.0.1:9/api",
        "--allowed-ip",
        "",
        "--credential",
        "api_key=k2",
        "--json",
    )

    assert (code, err) == (0, "")
    view = json.loads(out)
    assert (view["name"], view["enabled"], view["settings"]) == (
        "renamed",
        False,
        {
            "api_base_url": "http://127.0.0.1:9/api",
            "detail_url": None,
            "allowed_ips": [],
            "rate_limit": None,
        },
    )
    assert send(client, source["webhook_url"], source["webhook_secret"]) == 410


def test_edit_sets_and_lifts_a_rate_limit(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    key = create_org(client)
    source = create_source(client, key)

    limited = run(client, capsys, key, "edit", source["id"], "--rate-limit", "2.5/10")
    defaulted = run(client, capsys, key, "edit", source["id"], "--rate-limit", "20")
    lifted = run(client, capsys, key, "edit", source["id"], "--rate-limit", "")
    with pytest.raises(SystemExit) as bad:
        run(client, capsys, key, "edit", source["id"], "--rate-limit", "fast")

    assert limited[1].splitlines()[2:] == ["rate limit: 2.5/s, burst 10"]
    assert defaulted[1].splitlines()[2:] == ["rate limit: 20/s, burst 20"]
    assert lifted[1].splitlines()[2:] == []
    assert bad.value.code == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith(
            "argument --rate-limit: 'fast': give requests per second, and optionally /burst "
            "(e.g. 50/100)"
        )
    )


def test_edit_errors_are_one_line(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    key = create_org(client)
    source = create_source(client, key)

    bad_ip = run(client, capsys, key, "edit", source["id"], "--allowed-ip", "nope")
    nothing = run(client, capsys, key, "edit", source["id"])
    unknown = run(client, capsys, key, "get", "src_nope")

    assert (bad_ip[0], bad_ip[2].count("\n")) == (1, 1)
    assert bad_ip[2].startswith("error: 422 settings.allowed_ips.0: ")
    assert nothing == (
        2,
        "",
        "callwatch: nothing to change: pass at least one option (see --help)\n",
    )
    assert unknown == (1, "", "error: 404 Not found: no source 'src_nope'\n")


def test_delete(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    key = create_org(client)
    source = create_source(client, key)

    deleted = run(client, capsys, key, "delete", source["id"])
    again = run(client, capsys, key, "delete", source["id"])

    assert deleted == (0, f"deleted {source['id']}: its webhooks answer 404; its calls stay\n", "")
    assert again == (1, "", f"error: 404 Not found: no source '{source['id']}'\n")
    assert send(client, source["webhook_url"], source["webhook_secret"]) == 404


def test_rotate_token_prints_the_new_url_and_keeps_the_old_for_the_overlap(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    key = create_org(client)
    source = create_source(client, key)

    code, out, _ = run(client, capsys, key, "rotate-token", source["id"], "--overlap", "3600")

    lines = out.splitlines()
    new_url = lines[1].removeprefix("webhook URL: ")
    assert code == 0
    assert new_url != source["webhook_url"]
    assert lines[2].startswith("the previous webhook URL works until ")
    secret = source["webhook_secret"]
    assert (send(client, source["webhook_url"], secret, "a"), send(client, new_url, secret)) == (
        202,
        202,
    )


def test_rotate_secret_prints_the_new_secret_once(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    key = create_org(client)
    source = create_source(client, key)

    code, out, _ = run(client, capsys, key, "rotate-secret", source["id"], "--overlap", "0")

    first, second = out.splitlines()
    new = first.removeprefix("new webhook secret (shown once): ")
    assert (code, new.startswith("whsec_"), second) == (
        0,
        True,
        "the previous secret verifies no longer",
    )
    url = source["webhook_url"]
    assert (send(client, url, source["webhook_secret"], "a"), send(client, url, new, "b")) == (
        401,
        202,
    )


def test_rotate_secret_of_a_platform_issued_secret_says_what_to_do(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    key = create_org(client)
    source = create_source(
        client, key, name="v", provider="vapi", credentials={"webhook_secret": "s"}
    )

    refused = run(client, capsys, key, "rotate-secret", source["id"])

    assert refused == (
        1,
        "",
        "error: 409 provider: vapi issues this source's secret itself: rotate it on the "
        "platform, then PATCH the source's credentials.webhook_secret\n",
    )


def test_source_add_prints_the_webhook_secret(
    client: TestClient,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CALLWATCH_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CALLWATCH_SECRET_KEY", "test-secret-key")
    create_org(client)

    code = main(["source", "add", "--org", "acme", "--name", "cli"])

    view = json.loads(capsys.readouterr().out)
    assert (code, view["webhook_secret"].startswith("whsec_"), "signing_secret" in view) == (
        0,
        True,
        False,
    )
