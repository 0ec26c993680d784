"""`/alerts`: rules added from the form with the API's own errors, enabled, disabled, deleted."""

import re

from starlette.testclient import TestClient

from tests.dashboard.signing_in import sign_in
from tests.factories import tenant


def _rules(client: TestClient, headers: dict[str, str]) -> list[tuple[str, bool, str]]:
    items = client.get("/api/alert-rules", headers=headers).json()["items"]
    return [(rule["name"], rule["enabled"], rule["condition"]) for rule in items]


def test_a_call_rule_from_the_form_is_the_apis(client: TestClient) -> None:
    acme = tenant(client, "acme")
    csrf = sign_in(client, acme.key)
    form = {"csrf_token": csrf, "kind": "call", "name": "slow", "agent_id": ""}

    added = client.post(
        "/alerts/rules",
        data=form | {"expression": "latency.turn.p95 > 1500"},
        follow_redirects=False,
    )
    broken = client.post("/alerts/rules", data=form | {"expression": "latency.turn.p95 >"})
    api = client.post(
        "/api/alert-rules",
        json={"name": "slow", "kind": "call", "expression": "latency.turn.p95 >"},
        headers=acme.headers,
    )

    assert (added.status_code, added.headers["location"]) == (303, "/alerts")
    assert broken.status_code == 422
    found = re.search(r'<p class="error" role="alert" id="rule-error">([^<]*)</p>', broken.text)
    assert found is not None
    assert found.group(1).replace("&#39;", "'").replace("&gt;", ">") == api.json()["detail"]
    assert 'value="latency.turn.p95 &gt;"' in broken.text  # what was typed stays
    page = client.get("/alerts").text
    assert "<td>slow</td>" in page
    assert _rules(client, acme.headers) == [("slow", True, "latency.turn.p95 > 1500")]


def test_a_window_rule_is_added_disabled_enabled_and_deleted(client: TestClient) -> None:
    acme = tenant(client, "acme")
    csrf = sign_in(client, acme.key)
    client.post(
        "/alerts/rules",
        data={
            "csrf_token": csrf,
            "kind": "window",
            "name": "failing",
            "metric": "failure_rate",
            "minutes": "15",
            "op": ">",
            "threshold": "0.2",
            "min_calls": "5",
        },
    )
    (rule,) = client.get("/api/alert-rules", headers=acme.headers).json()["items"]
    assert rule["window"] == {
        "metric": "failure_rate",
        "minutes": 15,
        "op": ">",
        "threshold": 0.2,
        "min_calls": 5,
    }

    client.post(
        f"/alerts/rules/{rule['id']}/enabled", data={"csrf_token": csrf, "enabled": "false"}
    )
    disabled = _rules(client, acme.headers)
    client.post(f"/alerts/rules/{rule['id']}/enabled", data={"csrf_token": csrf, "enabled": "true"})
    enabled = _rules(client, acme.headers)
    forged = client.post(f"/alerts/rules/{rule['id']}/delete", data={"csrf_token": "x"})
    client.post(f"/alerts/rules/{rule['id']}/delete", data={"csrf_token": csrf})

    assert [enabled_ for _, enabled_, _ in disabled + enabled] == [False, True]
    assert forged.status_code == 403
    assert _rules(client, acme.headers) == []


def test_another_orgs_rule_cannot_be_touched(client: TestClient) -> None:
    acme, globex = tenant(client, "acme"), tenant(client, "globex")
    theirs = client.post(
        "/api/alert-rules",
        json={"name": "x", "kind": "call", "expression": "status in [failed]"},
        headers=globex.headers,
    ).json()
    csrf = sign_in(client, acme.key)

    toggled = client.post(
        f"/alerts/rules/{theirs['id']}/enabled", data={"csrf_token": csrf, "enabled": "false"}
    )
    deleted = client.post(f"/alerts/rules/{theirs['id']}/delete", data={"csrf_token": csrf})

    assert (toggled.status_code, deleted.status_code) == (404, 404)
    assert _rules(client, globex.headers) == [("x", True, "status in [failed]")]
    assert "<td>x</td>" not in client.get("/alerts").text
