"""The call log and the call page: filters, paging, export, one call's facts, org isolation."""

import json
from datetime import timedelta

from markupsafe import escape
from starlette.testclient import TestClient

from callwatch.model.records import Archive, Recording, Utterance
from callwatch.runtime import Runtime
from tests.dashboard.signing_in import call_ids, sign_in
from tests.factories import T0, add_call, add_source, tenant


def test_the_call_log_filters_as_the_api_does(client: TestClient, runtime: Runtime) -> None:
    acme = tenant(client, "acme")
    other_source = add_source(client, acme, "second")
    add_call(runtime, acme, "call_a", agent_id="sales", started_at=T0)
    add_call(runtime, acme, "call_b", agent_id="support", status="failed", started_at=T0)
    add_call(runtime, other_source, "call_c", direction="inbound", started_at=T0 + timedelta(1))
    add_call(
        runtime,
        acme,
        "call_d",
        customer_number="+4930123",
        recording=Recording(status="missing"),
        started_at=T0 - timedelta(days=3),
    )
    sign_in(client, acme.key)

    def shown(query: str) -> list[str]:
        response = client.get(f"/calls?{query}")
        assert response.status_code == 200, response.text
        return call_ids(response.text)

    assert shown("") == ["call_c", "call_b", "call_a", "call_d"]
    assert shown("agent_id=sales&status=&direction=") == ["call_a"]
    assert shown("status=failed") == ["call_b"]
    assert shown("direction=inbound") == ["call_c"]
    assert shown("source=second") == ["call_c"]
    assert shown("customer_phone=4930") == ["call_d"]
    assert shown("search=call_b") == ["call_b"]
    assert shown("date_from=2026-10-30&date_to=2026-11-01") == ["call_b", "call_a"]
    assert shown("has_recording=false") == ["call_d"]


def test_a_bad_filter_says_why_on_the_page(client: TestClient) -> None:
    acme = tenant(client, "acme")
    sign_in(client, acme.key)
    response = client.get("/calls?date_from=yesterday")
    assert response.status_code == 400
    assert "date_from: Value error, expected an ISO 8601 date or date-time" in response.text


def test_the_call_log_pages_and_polls_its_rows(client: TestClient, runtime: Runtime) -> None:
    acme = tenant(client, "acme")
    for index in range(30):
        add_call(runtime, acme, f"call_{index:02d}", started_at=T0 + timedelta(minutes=index))
    sign_in(client, acme.key)

    first = client.get("/calls?agent_id=sales-bot")
    second = client.get("/calls?agent_id=sales-bot&page=2")
    rows = client.get("/calls/rows?agent_id=sales-bot")

    newest_first = [f"call_{index:02d}" for index in reversed(range(30))]
    assert call_ids(first.text) == newest_first[:25]
    assert call_ids(second.text) == newest_first[25:]
    assert call_ids(rows.text) == newest_first[:25]
    assert 'hx-get="/calls/rows?agent_id=sales-bot" hx-trigger="every 5s"' in first.text
    assert 'href="/calls?agent_id=sales-bot&amp;page=2" rel="next"' in first.text
    assert 'href="/calls/export?agent_id=sales-bot&amp;format=csv"' in first.text


def test_the_export_is_of_the_current_filter(client: TestClient, runtime: Runtime) -> None:
    acme = tenant(client, "acme")
    add_call(runtime, acme, "call_a", agent_id="sales")
    add_call(runtime, acme, "call_b", agent_id="support")
    sign_in(client, acme.key)

    csv = client.get("/calls/export?agent_id=support&format=csv")
    ndjson = client.get("/calls/export?agent_id=sales&format=ndjson")

    assert csv.headers["content-disposition"] == 'attachment; filename="calls.csv"'
    assert [line.split(",")[0] for line in csv.text.splitlines()[1:]] == ["call_b"]
    assert [json.loads(line)["id"] for line in ndjson.text.splitlines()] == ["call_a"]


def test_a_call_page_shows_the_call(client: TestClient, runtime: Runtime) -> None:
    acme = tenant(client, "acme")
    transcript = [
        Utterance(role="assistant", content="Hello, how can I help?", start_s=0.4, end_s=1.5),
        Utterance(role="user", content="I need a refill", start_s=2.0, end_s=3.0),
        Utterance(role="assistant", content="Sure thing", start_s=3.85, end_s=4.5),
    ]
    add_call(runtime, acme, "call_1", transcript=transcript)
    sign_in(client, acme.key)

    response = client.get("/calls/call_1")
    text = response.text

    assert response.status_code == 200
    assert '<audio controls preload="metadata" src="https://rec.example/1.wav">' in text
    assert "<p>I need a refill</p>" in text
    assert '<span class="latency">replied after 850 ms</span>' in text
    assert "<title>turn p95</title>" not in text  # titles are the bars' texts
    assert "<title>1,200 ms</title>" in text  # turn p95 drawn
    assert "<title>500 ms</title>" in text  # time to first word drawn
    assert "Sales bot" in text
    assert "user_hangup" in text


def test_a_call_downloads_as_json(client: TestClient, runtime: Runtime) -> None:
    acme = tenant(client, "acme")
    add_call(runtime, acme, "call_1")
    sign_in(client, acme.key)
    downloaded = client.get("/calls/call_1/json")
    api = client.get("/api/calls/call_1", headers=acme.headers)
    assert downloaded.headers["content-disposition"] == 'attachment; filename="call_1.json"'
    assert downloaded.json() == api.json()


def test_replay_from_the_page(client: TestClient, runtime: Runtime) -> None:
    acme = tenant(client, "acme")
    add_call(runtime, acme, "call_1")
    csrf = sign_in(client, acme.key)
    response = client.post(
        "/calls/call_1/replay", data={"csrf_token": csrf}, follow_redirects=False
    )
    # The factory's call has no stored events: a replay leaves it alone, and says so.
    assert (response.status_code, response.headers["location"]) == (
        303,
        "/calls/call_1?replayed=no",
    )
    assert "Nothing to re-assemble" in client.get(response.headers["location"]).text


def test_delete_from_the_page_after_a_confirm(client: TestClient, runtime: Runtime) -> None:
    acme, globex = tenant(client, "acme"), tenant(client, "globex")
    add_call(runtime, acme, "call_1")
    add_call(runtime, globex, "call_theirs")
    csrf = sign_in(client, acme.key)

    confirm = client.get("/calls/call_1/delete")
    forged = client.post("/calls/call_1/delete", data={"csrf_token": "forged"})
    theirs = client.post("/calls/call_theirs/delete", data={"csrf_token": csrf})
    deleted = client.post("/calls/call_1/delete", data={"csrf_token": csrf}, follow_redirects=False)

    assert confirm.status_code == 200
    assert 'action="/calls/call_1/delete"' in confirm.text
    assert forged.status_code == 403
    assert theirs.status_code == 404
    assert (deleted.status_code, deleted.headers["location"]) == (303, "/calls")
    assert client.get("/api/calls/call_1", headers=acme.headers).status_code == 404
    assert client.get("/api/calls/call_theirs", headers=globex.headers).status_code == 200


def test_another_orgs_call_is_not_found(client: TestClient, runtime: Runtime) -> None:
    acme, globex = tenant(client, "acme"), tenant(client, "globex")
    add_call(runtime, globex, "call_theirs")
    add_call(runtime, acme, "call_ours")
    csrf = sign_in(client, acme.key)

    page = client.get("/calls/call_theirs")
    download = client.get("/calls/call_theirs/json")
    replay = client.post("/calls/call_theirs/replay", data={"csrf_token": csrf})
    listed = call_ids(client.get("/calls").text)
    exported = client.get("/calls/export?format=csv").text

    assert (page.status_code, download.status_code, replay.status_code) == (404, 404, 404)
    assert "no call &#39;call_theirs&#39;" in page.text
    assert listed == ["call_ours"]
    assert "call_theirs" not in exported


def test_an_archived_recording_plays_from_the_archive_under_a_self_only_policy(
    client: TestClient, runtime: Runtime
) -> None:
    acme = tenant(client, "acme")
    archive = Archive(status="archived", bytes=100, sha256="ab" * 32, content_type="audio/wav")
    url = "https://rec.example/1.wav"
    add_call(runtime, acme, "call_1", recording=Recording(status="available", url=url))
    add_call(
        runtime,
        acme,
        "call_2",
        recording=Recording(status="available", url=url, archive=archive),
    )
    sign_in(client, acme.key)

    before, after = client.get("/calls/call_1"), client.get("/calls/call_2")

    assert f'<audio controls preload="metadata" src="{url}">' in before.text
    assert "media-src 'self' https://rec.example;" in before.headers["content-security-policy"]
    assert '<audio controls preload="metadata" src="/api/calls/call_2/recording">' in after.text
    assert "media-src 'self';" in after.headers["content-security-policy"]


def test_a_recording_url_no_policy_can_name_gets_no_player(
    client: TestClient, runtime: Runtime
) -> None:
    acme = tenant(client, "acme")
    odd = "https://rec.example;script-src:1/1.wav"
    add_call(runtime, acme, "call_1", recording=Recording(status="available", url=odd))
    sign_in(client, acme.key)

    response = client.get("/calls/call_1")

    assert "<audio" not in response.text
    assert "script-src 'self';" in response.headers["content-security-policy"]


def test_platform_strings_are_escaped(client: TestClient, runtime: Runtime) -> None:
    acme = tenant(client, "acme")
    hostile = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    add_call(
        runtime,
        acme,
        "call_1",
        agent_name=hostile,
        agent_id=hostile,
        transcript=[Utterance(role="user", content=hostile)],
        metadata={"note": hostile},
        recording=Recording(status="available", url="javascript:alert(3)"),
    )
    sign_in(client, acme.key)
    for path in ("/calls/call_1", "/calls", "/?window=90d"):
        text = client.get(path).text
        assert "<script>alert" not in text
        assert "<img src=x" not in text
        assert "javascript:" not in text
    assert str(escape(hostile)) in client.get("/calls/call_1").text
    assert "<audio" not in client.get("/calls/call_1").text
