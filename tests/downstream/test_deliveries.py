"""Deliveries to real receivers on loopback: signatures, retries, terminal states, recovery."""

import asyncio
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import select, update
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from callwatch.db import transaction
from callwatch.downstream import attempts, deliveries
from callwatch.downstream.deliveries import Result
from callwatch.downstream.effects import Effects
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.simulator import BackgroundServer, events_for
from callwatch.tables import Delivery
from tests.conftest import path_of, signed
from tests.factories import Tenant, eventually, tenant, worker_process
from tests.pipeline.test_steps import hand_call
from workers.app import app as celery_app
from workers.app import configure
from workers.tasks import deliver, dispatch, sweep

FAST = {
    "allow_private_targets": True,  # the receivers are on loopback
    "delivery_retry_s": [0.2, 0.2, 0.2, 0.2],  # a round: 5 attempts
    "delivery_timeout_s": 1.0,
    "delivery_lease_s": 3.0,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival


class Receiver(BackgroundServer):
    """A subscriber's endpoint: records each POST on arrival, answers from a script per path
    (200 once the script is used up); while `hold` is set every answer waits (a hung receiver)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.hold = threading.Event()
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        super().__init__(Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])]))

    def script(self, path: str, *replies: Reply) -> str:
        self._scripts[path] = list(replies)
        return f"{self.url}/{path}"

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [each for each in self.received if each.path == path]

    def stop(self) -> None:
        self.hold.clear()
        super().stop()

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.path_params["path"]
        with self._lock:
            self.received.append(Received(path, dict(request.headers), body, time.monotonic()))
            replies = self._scripts.get(path)
            reply = replies.pop(0) if replies else Reply()
        while self.hold.is_set():
            await asyncio.sleep(0.05)
        await self.pause(reply.delay_s)
        return Response(status_code=reply.status, headers=reply.headers)


@pytest.fixture
def receiver() -> Any:
    with Receiver() as server:
        yield server


def subscribe(client: TestClient, owner: Tenant, url: str, **body: Any) -> dict[str, Any]:
    payload = {"url": url, "event_types": ["call.status_changed"], **body}
    response = client.post("/api/subscriptions", json=payload, headers=owner.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def call_data(owner: Tenant, call_id: str = "call_1", status: str = "ringing") -> dict[str, Any]:
    return {
        "call_id": call_id,
        "provider_call_id": f"p-{call_id}",
        "source_id": owner.source_id,
        "agent_id": "sales-bot",
        "status": status,
        "previous_status": None,
    }


def fan_out(runtime: Runtime, owner: Tenant, call_id: str = "call_1") -> list[str]:
    """A status change of a call fanned out, as the pipeline does; the deliveries created."""
    with transaction(runtime.sessions) as session:
        return deliveries.fan_out(
            session,
            owner.org_id,
            "call.status_changed",
            call_data(owner, call_id),
            f"call.status_changed:{call_id}:ringing",
            runtime.clock(),
        )


def emit(runtime: Runtime, owner: Tenant, call_id: str = "call_1") -> list[str]:
    """Fan out and enqueue after the commit, as the worker's tasks do."""
    created = fan_out(runtime, owner, call_id)
    dispatch(Effects(created))
    return created


def log_of(client: TestClient, owner: Tenant, subscription_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/subscriptions/{subscription_id}/deliveries", headers=owner.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def settled(
    client: TestClient, owner: Tenant, subscription_id: str, count: int = 1, timeout: float = 30
) -> list[dict[str, Any]]:
    """The delivery log once `count` deliveries are there and none is pending."""
    deadline = time.monotonic() + timeout
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = log_of(client, owner, subscription_id)
        if len(items) == count and all(item["state"] != "pending" for item in items):
            return items
        time.sleep(0.1)
    raise AssertionError(f"deliveries did not settle: {items}")


def summary(item: dict[str, Any]) -> dict[str, Any]:
    """A delivery as the log shows it, without times."""
    return {
        "state": item["state"],
        "last_status": item["last_status"],
        "last_error": item["last_error"],
        "attempts": [
            (attempt["number"], attempt["status_code"], attempt["outcome"], attempt["error"])
            for attempt in item["attempts"]
        ],
    }


def test_a_receiver_verifies_our_signatures_with_the_standardwebhooks_library(
    client, runtime, worker, receiver
) -> None:
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook"))
    created = emit(runtime, owner)
    settled(client, owner, subscription["id"])

    [request] = receiver.at("hook")
    verified = Webhook(subscription["secret"]).verify(request.body, request.headers)
    assert verified == {
        "type": "call.status_changed",
        "timestamp": verified["timestamp"],
        "data": call_data(owner),
    }
    assert request.headers["webhook-id"] == created[0]
    assert request.headers["content-type"] == "application/json"


def test_both_secrets_verify_during_a_rotation(client, runtime, worker, receiver) -> None:
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook"))
    old = subscription["secret"]
    rotated = client.post(
        f"/api/subscriptions/{subscription['id']}/rotate-secret", headers=owner.headers
    ).json()
    emit(runtime, owner)
    settled(client, owner, subscription["id"])

    [request] = receiver.at("hook")
    new = rotated["secret"]
    assert new.startswith("whsec_")
    assert new != old
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(request.body, request.headers)["type"] == (
            "call.status_changed"
        )
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 44).verify(request.body, request.headers)


def timed_out(seconds: float) -> str:
    return f"timed out after {seconds:g} s (ReadTimeout)"


ENDINGS = {
    "fails 3x then succeeds": (
        [Reply(500), Reply(503), Reply(502), Reply(200)],
        {
            "state": "delivered",
            "last_status": 200,
            "last_error": None,
            "attempts": [
                (1, 500, "retry", "HTTP 500"),
                (2, 503, "retry", "HTTP 503"),
                (3, 502, "retry", "HTTP 502"),
                (4, 200, "delivered", None),
            ],
        },
    ),
    "always 500": (
        [Reply(500)] * 5,
        {
            "state": "failed",
            "last_status": 500,
            "last_error": "gave up after 5 attempts: HTTP 500",
            "attempts": [(n, 500, "retry", "HTTP 500") for n in range(1, 5)]
            + [(5, 500, "failed", "HTTP 500")],
        },
    ),
    "hangs past the timeout, then answers": (
        [Reply(200, delay_s=5), Reply(200)],
        {
            "state": "delivered",
            "last_status": 200,
            "last_error": None,
            "attempts": [(1, None, "retry", timed_out(1)), (2, 200, "delivered", None)],
        },
    ),
    "times out with 408, then answers": (
        [Reply(408), Reply(204)],
        {
            "state": "delivered",
            "last_status": 204,
            "last_error": None,
            "attempts": [(1, 408, "retry", "HTTP 408"), (2, 204, "delivered", None)],
        },
    ),
    "redirects": (
        [Reply(302, {"location": "/elsewhere"})],
        {
            "state": "failed",
            "last_status": 302,
            "last_error": "HTTP 302 redirect to /elsewhere (redirects are not followed)",
            "attempts": [
                (1, 302, "failed", "HTTP 302 redirect to /elsewhere (redirects are not followed)")
            ],
        },
    ),
    "rejects with 400": (
        [Reply(400)],
        {
            "state": "failed",
            "last_status": 400,
            "last_error": "HTTP 400",
            "attempts": [(1, 400, "failed", "HTTP 400")],
        },
    ),
}


@pytest.mark.parametrize("name", list(ENDINGS))
def test_each_receiver_ends_as_specified(name, client, runtime, worker, receiver) -> None:
    replies, expected = ENDINGS[name]
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook", *replies))
    emit(runtime, owner)

    [item] = settled(client, owner, subscription["id"])

    assert summary(item) == expected
    assert len(receiver.at("hook")) == len(expected["attempts"])
    assert receiver.at("elsewhere") == []  # a redirect is never followed


def test_429_retry_after_is_a_floor(client, runtime, worker, receiver) -> None:
    owner = tenant(client, "acme")
    throttled = Reply(429, {"retry-after": "2"})
    subscription = subscribe(client, owner, receiver.script("hook", throttled, Reply(200)))
    emit(runtime, owner)

    [item] = settled(client, owner, subscription["id"])

    assert summary(item)["attempts"] == [(1, 429, "retry", "HTTP 429"), (2, 200, "delivered", None)]
    first, second = receiver.at("hook")
    assert second.at - first.at >= 2.0  # the schedule alone would wait 0.1-0.3 s
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


def test_410_disables_the_subscription_and_cancels_its_pending_deliveries(
    client, runtime, worker, receiver
) -> None:
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook", Reply(410)))
    [waiting] = fan_out(runtime, owner, "call_waiting")
    with transaction(runtime.sessions) as session:  # a retry due in an hour
        later = runtime.clock() + timedelta(hours=1)
        session.execute(
            update(Delivery).where(Delivery.id == waiting).values(next_attempt_at=later)
        )
    [gone] = emit(runtime, owner, "call_gone")

    items = settled(client, owner, subscription["id"], count=2)

    by_id = {item["id"]: summary(item) for item in items}
    assert by_id[gone] == {
        "state": "failed",
        "last_status": 410,
        "last_error": "HTTP 410",
        "attempts": [(1, 410, "disabled", "HTTP 410")],
    }
    shown = client.get(f"/api/subscriptions/{subscription['id']}", headers=owner.headers).json()
    assert (shown["enabled"], shown["disabled_reason"].split(" at ")[0]) == (
        False,
        "the receiver answered 410 Gone",
    )
    assert by_id[waiting] == {
        "state": "canceled",
        "last_status": None,
        "last_error": f"subscription disabled: {shown['disabled_reason']}",
        "attempts": [],
    }
    assert emit(runtime, owner, "call_after") == []  # a disabled subscription gets nothing


def test_sustained_failure_disables_the_subscription(client, runtime, worker, receiver) -> None:
    runtime.settings = runtime.settings.model_copy(update={"subscription_disable_after_s": 0.3})
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook", *[Reply(500)] * 5))
    emit(runtime, owner)

    [item] = settled(client, owner, subscription["id"])

    shown = client.get(f"/api/subscriptions/{subscription['id']}", headers=owner.headers).json()
    assert shown["enabled"] is False
    assert shown["disabled_reason"].startswith("no successful delivery since ")
    assert item["state"] == "canceled"
    assert item["last_error"] == f"subscription disabled: {shown['disabled_reason']}"
    assert [attempt["outcome"] for attempt in item["attempts"]][-1] == "retry"
    assert 2 <= len(item["attempts"]) < 5


def test_a_success_clears_failing_since(client, runtime, worker, receiver) -> None:
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook", Reply(500), Reply(200)))
    emit(runtime, owner)
    settled(client, owner, subscription["id"])

    shown = client.get(f"/api/subscriptions/{subscription['id']}", headers=owner.headers).json()
    assert (shown["enabled"], shown["failing_since"]) == (True, None)


def test_a_double_enqueue_sends_once(client, runtime, worker, receiver) -> None:
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook", Reply(200, delay_s=0.5)))
    [created] = fan_out(runtime, owner)
    for _ in range(3):
        deliver.delay(created)

    [item] = settled(client, owner, subscription["id"])
    time.sleep(1.0)  # room for a second send to show up, if there were one

    assert len(receiver.at("hook")) == 1
    assert summary(item)["attempts"] == [(1, 200, "delivered", None)]


def test_fanning_the_same_event_out_twice_is_one_delivery(client, runtime, receiver) -> None:
    owner = tenant(client, "acme")
    subscribe(client, owner, receiver.script("hook"))

    first = fan_out(runtime, owner)
    again = fan_out(runtime, owner)

    assert (len(first), again) == (1, [])
    with runtime.sessions() as session:
        assert session.scalars(select(Delivery.id)).all() == first


def test_a_far_retry_is_left_to_the_sweeper(client, runtime, receiver) -> None:
    runtime.settings = runtime.settings.model_copy(update={"delivery_retry_s": [1000.0]})
    owner = tenant(client, "acme")
    subscribe(client, owner, receiver.script("hook", Reply(503)))
    [created] = fan_out(runtime, owner)

    countdowns = attempts.deliver(runtime, created)
    with transaction(runtime.sessions) as session:
        due = session.get_one(Delivery, created).next_attempt_at
        assert due is not None
        not_yet = deliveries.overdue(session, due - timedelta(seconds=1))
        swept = deliveries.overdue(session, due)
        again = deliveries.overdue(session, due + timedelta(seconds=60))

    assert (countdowns, not_yet, swept, again) == ({}, [], [created], [])
    assert attempts.deliver(runtime, created) == {}  # not due yet: no second send
    assert len(receiver.at("hook")) == 1


def test_resend_one_keeps_the_webhook_id_and_continues_the_log(
    client, runtime, worker, receiver
) -> None:
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook", Reply(400), Reply(200)))
    [created] = emit(runtime, owner)
    settled(client, owner, subscription["id"])

    response = client.post(
        f"/api/subscriptions/{subscription['id']}/deliveries/{created}/resend",
        headers=owner.headers,
    )
    assert (response.status_code, response.json()) == (202, {"queued": 1})
    [item] = settled(client, owner, subscription["id"])

    assert summary(item)["attempts"] == [
        (1, 400, "failed", "HTTP 400"),
        (2, 200, "delivered", None),
    ]
    assert [r.headers["webhook-id"] for r in receiver.at("hook")] == [created, created]


def test_resend_a_time_range(client, runtime, worker, receiver) -> None:
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook"))
    start = runtime.clock()
    created = [emit(runtime, owner, f"call_{n}")[0] for n in range(3)]
    settled(client, owner, subscription["id"], count=3)
    end = runtime.clock() + timedelta(seconds=1)

    response = client.post(
        f"/api/subscriptions/{subscription['id']}/resend",
        json={"from": start.isoformat(), "to": end.isoformat()},
        headers=owner.headers,
    )
    assert (response.status_code, response.json()) == (202, {"queued": 3})
    deadline = time.monotonic() + 20
    while len(receiver.at("hook")) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    items = settled(client, owner, subscription["id"], count=3)

    assert sorted(r.headers["webhook-id"] for r in receiver.at("hook")) == sorted(created * 2)
    assert [len(item["attempts"]) for item in items] == [2, 2, 2]


def test_an_assembled_call_is_delivered_with_its_record(client, runtime, worker, receiver) -> None:
    owner = tenant(client, "acme")
    source = client.post(
        "/api/sources", json={"name": "signed", "provider": "generic"}, headers=owner.headers
    ).json()
    subscription = subscribe(client, owner, receiver.script("hook"), event_types=["call.assembled"])
    for body in events_for(hand_call("e2e-1"), embed_detail=True):
        raw = json.dumps(body).encode()
        headers = signed(source["webhook_secret"], raw)
        assert client.post(path_of(source["webhook_url"]), content=raw, headers=headers).is_success

    [item] = settled(client, owner, subscription["id"])

    [request] = receiver.at("hook")
    sent = Webhook(subscription["secret"]).verify(request.body, request.headers)
    assert (item["state"], sent["type"]) == ("delivered", "call.assembled")
    assert sent["data"]["record"]["provider_call_id"] == "e2e-1"
    assert sent["data"]["record"]["assembly"]["state"] == "assembled"
    assert sent["data"]["source_id"] == source["id"]


@pytest.mark.slow
def test_worker_killed_mid_delivery_and_redis_flushed_still_delivers_each_once_or_more(
    client, settings, runtime, receiver, tmp_path
) -> None:
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook"))
    receiver.hold.set()  # every answer waits: the worker dies with sends under way
    configure(celery_app, settings)
    celery_app.runtime = runtime  # for dispatch(), which enqueues through this app
    log = (tmp_path / "worker.log").open("wb")
    doomed = worker_process(
        settings,
        log,
        allow_private_targets="true",
        delivery_lease_s=str(settings.delivery_lease_s),
        delivery_timeout_s="60",  # the hung receiver must not time out first
    )
    try:
        created = [emit(runtime, owner, f"call_{n}")[0] for n in range(6)]
        eventually(lambda: len(receiver.at("hook")) >= 1, timeout=30)
        time.sleep(0.5)  # the other worker process picks up its send too
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        log.close()
    hung = {request.headers["webhook-id"] for request in receiver.at("hook")}
    redis.Redis.from_url(settings.broker_url).flushall()  # every queued message is gone too
    receiver.hold.clear()

    with start_in_thread_worker(settings):
        time.sleep(settings.delivery_lease_s)  # the dead sends' leases lapse
        sweep.delay()
        items = settled(client, owner, subscription["id"], count=6)
    celery_app.runtime = None

    ids = [request.headers["webhook-id"] for request in receiver.at("hook")]
    duplicates = len(ids) - len(set(ids))
    assert sorted(set(ids)) == sorted(created)  # every delivery arrived at least once
    assert (duplicates, {item["state"] for item in items}) == (len(hung), {"delivered"})
    for item in items:  # the receiver drops the second copy of these by their webhook-id
        outcomes = [attempt["outcome"] for attempt in item["attempts"]]
        assert outcomes == (["interrupted", "delivered"] if item["id"] in hung else ["delivered"])


def start_in_thread_worker(settings: Settings) -> Any:
    from celery.contrib.testing.worker import start_worker

    return start_worker(
        celery_app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30
    )


VERDICTS = [
    (Result(200), "delivered"),
    (Result(204), "delivered"),
    (Result(299), "delivered"),
    (Result(410), "gone"),
    (Result(408), "retry"),
    (Result(429), "retry"),
    (Result(500), "retry"),
    (Result(503), "retry"),
    (Result(None, "timed out"), "retry"),
    (Result(None, "ConnectError: refused"), "retry"),
    (Result(None, "refused: x resolves to 10.0.0.1 (private)", refused=True), "failed"),
    (Result(301), "failed"),
    (Result(302), "failed"),
    (Result(400), "failed"),
    (Result(401), "failed"),
    (Result(404), "failed"),
    (Result(422), "failed"),
    (Result(101), "failed"),
]


@pytest.mark.parametrize(("result", "expected"), VERDICTS)
def test_verdict(result: Result, expected: str) -> None:
    assert deliveries.verdict(result) == expected


SCHEDULE = [5.0, 300.0, 1800.0]


@pytest.mark.parametrize(
    ("attempts", "retry_after", "jitter", "expected"),
    [
        (1, None, 0.5, 5.0),
        (1, None, 0.0, 2.5),  # -50 %
        (1, None, 0.999, 5.0 * 1.499),  # +50 %
        (2, None, 0.5, 300.0),
        (3, None, 0.5, 1800.0),
        (4, None, 0.5, None),  # the schedule is used up: 4 attempts in a round
        (0, None, 0.5, None),
        (1, 120.0, 0.5, 120.0),  # Retry-After is a floor ...
        (2, 120.0, 0.5, 300.0),  # ... never a ceiling
        (1, 10**9, 0.5, 86400.0),  # and a day at most
        (4, 120.0, 0.5, None),
    ],
)
def test_retry_delay(attempts, retry_after, jitter, expected) -> None:
    delay = deliveries.retry_delay(
        attempts, schedule=SCHEDULE, retry_after_s=retry_after, jitter=jitter
    )
    assert delay == (pytest.approx(expected) if expected is not None else None)


def test_the_default_schedule_is_8_attempts_over_about_a_day() -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]

    assert deliveries.max_attempts(defaults) == 8
    assert 20 * 3600 < sum(defaults.delivery_retry_s) < 30 * 3600


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    from email.utils import format_datetime

    from callwatch.outbound.http import retry_after

    in_an_hour = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    an_hour_ago = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)

    assert [retry_after(value) for value in ("120", "1.5", an_hour_ago, "soon", None)] == [
        120.0,
        1.5,
        0.0,
        None,
        None,
    ]
    assert 3590 < (retry_after(in_an_hour) or 0) <= 3600
