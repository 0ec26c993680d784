"""`callwatch calls delete`, `callwatch erasure create|list` against the real API, and
`callwatch purge` against the real database."""

import re
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from callwatch.cli.main import main
from callwatch.runtime import Runtime
from tests.cli.test_keys import cells, run, when
from tests.factories import add_call, tenant
from tests.pipeline.test_replay import cli  # noqa: F401
from tests.retention.conftest import full_call, left_of
from tests.retention.test_purge import NOTHING, WHOLE


def test_calls_delete_deletes_the_call(
    client: TestClient, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = tenant(client, "acme")
    add_call(runtime, owner, "doomed")

    done = run(client, capsys, "calls", "delete", "doomed", "--api-key", owner.key)
    again = run(client, capsys, "calls", "delete", "doomed", "--api-key", owner.key)

    assert done == (0, "deleted doomed with its events, deliveries and recording\n", "")
    assert again == (1, "", "error: 404 Not found: no call 'doomed'\n")


def test_erasure_create_then_list(
    client: TestClient, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = tenant(client, "acme")
    add_call(runtime, owner, "theirs", customer_number="+14155550100")

    code, out, err = run(
        client, capsys, "erasure", "create", "+14155550100", "--api-key", owner.key
    )
    listed = run(client, capsys, "erasure", "list", "--api-key", owner.key)

    [erasure] = client.get("/api/erasures", headers=owner.headers).json()["items"]
    assert (code, out, err) == (0, f"erased 1 calls ({erasure['id']})\n", "")
    assert listed[0] == 0
    assert cells(listed[1]) == [
        ["ID", "WHEN (UTC)", "CALLS", "KEY"],
        [erasure["id"], when(erasure["created_at"]), "1", erasure["key_id"]],
    ]
    assert "4155550100" not in listed[1]


def test_a_bad_number_is_one_line_saying_what_to_send(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = tenant(client, "acme")

    code, out, err = run(client, capsys, "erasure", "create", "4155550100", "--api-key", owner.key)

    assert (code, out) == (1, "")
    assert err == (
        "error: 422 phone_number: a phone number in E.164 form, with its country code: "
        "+14155550100\n"
    )


def test_purge_runs_now_and_says_what_it_deleted(
    client: TestClient,
    runtime: Runtime,
    cli: None,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    owner = tenant(client, "acme")
    assert client.patch(
        "/api/settings", json={"retention_days": 7}, headers=owner.headers
    ).is_success
    now = runtime.clock()
    old = [full_call(runtime, owner, "old", now - timedelta(days=8))]
    new = [full_call(runtime, owner, "new", now - timedelta(days=6))]

    code = main(["purge"])

    out, err = capsys.readouterr()
    assert code == 0
    assert re.fullmatch(
        r"1 calls, 2 events, 0 raw_bodies, 1 recordings, 1 deliveries, 1 alerts in \d+\.\d s\n",
        out,
    ), out
    assert err == "purged 1 calls, 2 events, 1 recordings, 1 deliveries, 1 alerts\n"
    assert (left_of(runtime, owner, old), left_of(runtime, owner, new)) == (NOTHING, WHOLE)
