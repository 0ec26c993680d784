"""`DELETE /api/calls/{id}` and erasure by number, through the app, a real worker delivering
`call.deleted` to a loopback subscriber, the real Redis streams and the recording store."""

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook
from starlette.testclient import TestClient

from callwatch.downstream import streams
from callwatch.downstream.effects import StreamEntry
from callwatch.retention import erasures
from callwatch.runtime import Runtime
from callwatch.simulator import DetailServer, events_for
from callwatch.tables import Erasure, InboxEvent
from tests.calls.test_rollups import rollup_rows
from tests.conftest import create_source, path_of, signed
from tests.downstream.test_deliveries import Receiver, receiver, subscribe  # noqa: F401
from tests.factories import Tenant, add_call, eventually, tenant
from tests.pipeline.test_steps import hand_call
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


def test_a_call_deleted_while_a_worker_assembles_it_stays_deleted(
    client: TestClient, runtime: Runtime, worker: None
) -> None:
    owner = tenant(client, "acme")
    with DetailServer() as platform:
        source = create_source(client, owner.key, settings={"detail_url": platform.detail_url})
        call = hand_call("mid-assembly")
        platform.add(call, hang_first_s=2)  # the worker's detail fetch takes its time
        for body in events_for(call, embed_detail=False):
            raw = json.dumps(body).encode()
            headers = signed(source["webhook_secret"], raw)
            posted = client.post(path_of(source["webhook_url"]), content=raw, headers=headers)
            assert posted.status_code == 202, posted.text
        eventually(lambda: platform.requests("mid-assembly") == 1)  # fetching now

        deleted = client.delete("/api/calls/mid-assembly", headers=owner.headers)
        time.sleep(4)  # the fetch answers; the worker goes on with a call that is gone

    assert deleted.status_code == 204
    assert client.get("/api/calls/mid-assembly", headers=owner.headers).status_code == 404
    assert client.get("/api/quarantine", headers=owner.headers).json()["items"] == []
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboxEvent)) == 0
