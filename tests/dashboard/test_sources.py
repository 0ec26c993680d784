"""`/sources`: the org's sources with their webhook URLs; adding one from the form."""

import re

from starlette.testclient import TestClient

from tests.dashboard.signing_in import sign_in
from tests.factories import tenant


def test_sources_list_their_webhook_urls(client: TestClient) -> None:
    acme, globex = tenant(client, "acme", source="main"), tenant(client, "globex", source="theirs")
    sign_in(client, acme.key)
    (source,) = client.get("/api/sources", headers=acme.headers).json()["items"]

    page = client.get("/sources").text

    assert f'data-copy="{source["webhook_url"]}"' in page
    assert ">theirs<" not in page
    assert globex.source_id not in page


def test_a_source_added_from_the_form_shows_its_secret_once(client: TestClient) -> None:
    acme = tenant(client, "acme")
    csrf = sign_in(client, acme.key)

    added = client.post(
        "/sources", data={"csrf_token": csrf, "name": "gen2", "provider": "generic"}
    )
    again = client.post(
        "/sources", data={"csrf_token": csrf, "name": "gen2", "provider": "generic"}
    )
    unknown = client.post("/sources", data={"csrf_token": csrf, "name": "x", "provider": "nope"})

    assert added.status_code == 201
    secret = re.search(r'<code id="new-secret">(whsec_[^<]+)</code>', added.text)
    assert secret is not None
    assert secret.group(1) not in client.get("/sources").text
    assert (again.status_code, unknown.status_code) == (409, 422)
    assert "a source named &#39;gen2&#39; already exists" in again.text
    assert "unknown provider &#39;nope&#39;" in unknown.text
    names = [
        item["name"] for item in client.get("/api/sources", headers=acme.headers).json()["items"]
    ]
    assert sorted(names) == ["gen2", "main"]
