"""`DELETE /api/calls/{id}` and erasure by number, through the app, a real worker delivering
`call.deleted` to a loopback subscriber, the real Redis streams and the recording store."""

from datetime import timedelta

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook
from starlette.testclient import TestClient

from callwatch.downstream import streams
from callwatch.downstream.effects import StreamEntry
from callwatch.retention import erasures
from callwatch.runtime import Runtime
from callwatch.tables import Erasure
from tests.calls.test_rollups import rollup_rows
from tests.downstream.test_deliveries import Receiver, receiver, subscribe  # noqa: F401
from tests.factories import Tenant, add_call, eventually, tenant
from tests.retention.conftest import full_call, left_of
from tests.retention.test_purge import NOTHING, WHOLE, rebuilt, scraped

NUMBER = "+14155550100"


def entry(owner: Tenant, call_id: str) -> StreamEntry:
    return StreamEntry(streams.CALLS_STREAM, "call.assembled", owner.org_id, call_id, {})


def stream_calls(rt: Runtime) -> list[str]:
    assert rt.redis is not None
    return [fields[b"call_id"].decode() for _, fields in rt.redis.xrange(streams.CALLS_STREAM)]


def test_a_deleted_call_leaves_nothing_and_its_subscribers_are_told(
    client: TestClient,
    runtime: Runtime,
    worker: None,
    receiver: Receiver,  # noqa: F811
) -> None:
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook"), event_types=["call.deleted"])
    now = runtime.clock()
    gone = full_call(runtime, owner, "gone", now - timedelta(hours=2))
    stays = full_call(runtime, owner, "stays", now - timedelta(hours=1))
    assert runtime.redis is not None
    streams.publish(runtime.redis, [entry(owner, gone), entry(owner, stays)], maxlen=100)

    response = client.delete(f"/api/calls/{gone}", headers=owner.headers)

    assert (response.status_code, response.content) == (204, b"")
    eventually(lambda: len(receiver.at("hook")) == 1)
    [sent] = receiver.at("hook")
    told = Webhook(subscription["secret"]).verify(sent.body, sent.headers)
    assert (told["type"], told["data"]) == (
        "call.deleted",
        {
            "call_id": gone,
            "provider_call_id": f"p-{gone}",
            "source_id": owner.source_id,
            "agent_id": "sales-bot",
            "status": "completed",
        },
    )
    assert left_of(runtime, owner, [gone]) == NOTHING
    assert left_of(runtime, owner, [stays]) == WHOLE
    assert stream_calls(runtime) == [stays]
    assert rollup_rows(runtime) == rebuilt(runtime)
    assert client.get(f"/api/calls/{gone}", headers=owner.headers).status_code == 404
    assert client.delete(f"/api/calls/{gone}", headers=owner.headers).status_code == 404
    assert scraped(client, "callwatch_erased_calls") == {"": 1}


def test_another_orgs_call_is_not_found_and_stays(client: TestClient, runtime: Runtime) -> None:
    owner, other = tenant(client, "acme"), tenant(client, "other")
    call_id = full_call(runtime, owner, "mine", runtime.clock())

    response = client.delete(f"/api/calls/{call_id}", headers=other.headers)

    assert (response.status_code, response.headers["content-type"]) == (
        404,
        "application/problem+json",
    )
    assert left_of(runtime, owner, [call_id]) == WHOLE


def test_a_numbers_calls_are_erased_however_the_platform_wrote_it(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(erasures, "BATCH", 2)  # three calls: two transactions
    owner, other = tenant(client, "acme"), tenant(client, "other")
    written = {"from_number": NUMBER, "to_number": "14155550100"}
    for call_id, numbers in (
        ("from", {"from_number": NUMBER}),
        ("to", {"to_number": "14155550100"}),
        ("customer", {"customer_number": "(415) 555-0100"}),
        ("unrelated", {}),
    ):
        add_call(runtime, owner, call_id, **numbers)
    add_call(runtime, other, "other-org", **written)
    [key] = client.get("/api/keys", headers=owner.headers).json()["items"]

    response = client.post(
        "/api/erasures", json={"phone_number": "+1 415-555-0100"}, headers=owner.headers
    )

    assert response.status_code == 201, response.text
    done = response.json()
    assert done == {
        "id": done["id"],
        "calls": 3,
        "key_id": key["id"],
        "created_at": done["created_at"],
    }
    assert client.get("/api/erasures", headers=owner.headers).json() == {"items": [done]}
    assert client.get("/api/erasures", headers=other.headers).json() == {"items": []}
    listed = client.get("/api/calls", headers=owner.headers).json()["items"]
    assert [item["id"] for item in listed] == ["unrelated"]
    assert client.get("/api/calls/other-org", headers=other.headers).status_code == 200
    with runtime.sessions() as session:
        kept = session.scalars(select(Erasure)).one()
    assert kept.number_fingerprint == runtime.vault.fingerprint(NUMBER)
    assert "4155550100" not in repr(
        {column.name: getattr(kept, column.name) for column in Erasure.__table__.columns}
    )


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("4155550100", "a phone number in E.164 form, with its country code: +14155550100"),
        ("+1 415", "not a possible phone number for its country code"),
        ("call me", "a phone number in E.164 form, with its country code: +14155550100"),
    ],
)
def test_a_number_that_is_not_e164_is_refused_naming_the_field(
    client: TestClient, number: str, why: str
) -> None:
    owner = tenant(client, "acme")

    response = client.post("/api/erasures", json={"phone_number": number}, headers=owner.headers)

    assert (response.status_code, response.headers["content-type"]) == (
        422,
        "application/problem+json",
    )
    assert response.json()["detail"] == f"phone_number: {why}"
    assert client.get("/api/erasures", headers=owner.headers).json() == {"items": []}


def test_an_erasure_needs_an_api_key(client: TestClient) -> None:
    response = client.post("/api/erasures", json={"phone_number": NUMBER})

    assert response.status_code == 401
