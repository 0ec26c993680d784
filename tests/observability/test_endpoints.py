"""`GET /metrics`: intake counted, and every value on a seeded database and Redis."""

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callwatch.app import create_app
from callwatch.cli.embedded import free_port
from callwatch.downstream import streams
from callwatch.downstream.effects import StreamEntry
from callwatch.errors import NotFound, StoreUnavailable, Unauthorized
from callwatch.intake import counts as intake_counts
from callwatch.observability.scrape import PURGED_KINDS
from callwatch.queue import QUEUE
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.tables import (
    Alert,
    AlertRule,
    Call,
    Delivery,
    DeliveryAttempt,
    InboxEvent,
    PendingJoin,
    Subscription,
)
from tests.conftest import make_settings, signed
from tests.factories import Tenant, add_call, tenant

# ---------------------------------------------------------------- intake, counted


def noting(provider: str | None, outcome: str | None, error: Exception | None) -> ASGIApp:
    """An ASGI app that notes what the webhook endpoint notes, then replies or raises."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if provider is not None:
            scope[intake_counts.PROVIDER] = provider
        if error is not None:
            raise error
        if outcome is not None:
            scope[intake_counts.OUTCOME] = outcome
        await Response(status_code=202)(scope, receive, send)

    return app


@pytest.mark.parametrize(
    ("provider", "outcome", "error", "counted"),
    [
        ("vapi", "accepted", None, ("vapi", "accepted")),
        ("vapi", "duplicate", None, ("vapi", "duplicate")),
        ("vapi", None, Unauthorized("bad signature"), ("vapi", "rejected")),
        (None, None, NotFound("unknown webhook token"), ("unknown", "rejected")),
        ("vapi", None, StoreUnavailable("database unavailable"), ("vapi", "unavailable")),
        ("vapi", None, RuntimeError("bug"), ("vapi", "error")),
    ],
)
def test_a_webhook_request_is_counted_under_its_provider_and_outcome(
    provider: str | None, outcome: str | None, error: Exception | None, counted: tuple[str, str]
) -> None:
    app = Starlette()
    endpoint = intake_counts.Counted(noting(provider, outcome, error))
    scope = {"type": "http", "app": app, "method": "POST", "headers": []}

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    with contextlib.suppress(Exception):
        asyncio.run(endpoint(scope, receive, send))

    assert intake_counts.counts_of(app) == {counted: 1}


# ---------------------------------------------------------------- on a seeded database


def samples(text: str, prefix: str = "callwatch_") -> dict[str, str]:
    """`name{labels}` → value (`3`, `2.04`) of every sample line whose name starts with `prefix`;
    each family's HELP and TYPE come first."""
    out: dict[str, str] = {}
    described: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            described.add(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        base = name.split("{", 1)[0]
        assert any(base == d or base.startswith(d + "_") for d in described), line
        if name.startswith(prefix):
            number = float(value)
            out[name] = str(int(number)) if number.is_integer() else repr(number)
    return out


@pytest.fixture
def metrics_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def seed_database(runtime: Runtime, owner: Tenant, now: datetime) -> None:
    for call_id, state in [
        ("c-done", "assembled"),
        ("c-new", "pending"),
        ("c-rec-1", "awaiting_recording"),
        ("c-rec-2", "awaiting_recording"),
        ("c-gave-up", "failed"),
    ]:
        add_call(runtime, owner, call_id)
        with runtime.sessions.begin() as session:
            session.execute(update(Call).where(Call.id == call_id).values(assembly_state=state))
    with runtime.sessions.begin() as session:
        # Two pending, one applied (and waiting for the call it joins, by two of its ids), one
        # quarantined (neither pending nor applied).
        for n, (processed, quarantined) in enumerate(
            [(None, None), (None, None), (now, None), (None, now)]
        ):
            session.add(
                InboxEvent(
                    id=f"evt_{n}",
                    org_id=owner.org_id,
                    source_id=owner.source_id,
                    dedupe_key=f"k{n}",
                    provider_call_id="p",
                    event={},
                    raw_body="{}",
                    content_type="application/json",
                    received_at=now,
                    due_at=now,
                    processed_at=processed,
                    quarantined_at=quarantined,
                )
            )
        session.flush()
        for key in ("fixa-call", "call_other"):
            session.add(PendingJoin(inbox_id="evt_2", join_key=key, org_id=owner.org_id))
        session.add(
            Subscription(
                id="sub_1",
                org_id=owner.org_id,
                url="https://example.com/hook",
                event_types=["call.assembled"],
                filters={},
                enabled=True,
                secret="x",
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        # (id, created seconds ago, state, seconds to delivery, attempt outcomes)
        for delivery_id, age, state, took, outcomes in [
            ("d1", 60, "delivered", 0.04, ["delivered"]),
            ("d2", 30, "delivered", 2.0, ["retry", "delivered"]),
            ("d3", 10, "pending", None, ["retry"]),
            ("d4", 20, "failed", None, ["retry", "failed"]),
            ("d5", 3600, "delivered", 0.01, ["delivered"]),  # before the window
            ("d6", 7200, "pending", None, ["retry"] * 5),  # before it, still outstanding
        ]:
            created = now - timedelta(seconds=age)
            session.add(
                Delivery(
                    id=delivery_id,
                    org_id=owner.org_id,
                    subscription_id="sub_1",
                    event_type="call.assembled",
                    event_key=delivery_id,
                    payload={},
                    state=state,
                    attempts=len(outcomes),
                    created_at=created,
                    delivered_at=None if took is None else created + timedelta(seconds=took),
                    updated_at=now,
                )
            )
            session.flush()
            for number_, outcome in enumerate(outcomes, 1):
                session.add(
                    DeliveryAttempt(
                        id=f"{delivery_id}-{number_}",
                        delivery_id=delivery_id,
                        number=number_,
                        started_at=created,
                        outcome=outcome,
                    )
                )
        for rule_id, kind in [("r-window", "window"), ("r-call", "call")]:
            session.add(
                AlertRule(
                    id=rule_id,
                    org_id=owner.org_id,
                    name=rule_id,
                    kind=kind,
                    enabled=True,
                    created_at=now,
                    updated_at=now,
                )
            )
        session.flush()
        for alert_id, rule_id, state in [
            ("a1", "r-window", "resolved"),
            ("a2", "r-window", "open"),
            ("a3", "r-call", "open"),
        ]:
            session.add(
                Alert(
                    id=alert_id,
                    org_id=owner.org_id,
                    rule_id=rule_id,
                    dedupe_key=alert_id,
                    state=state,
                    triggered_at=now,
                )
            )


def send_webhooks(client: TestClient, secret: str, token: str) -> None:
    """One accepted, the same again (duplicate), one badly signed, one to an unknown token."""
    body = json.dumps(
        {
            "type": "call.status_changed",
            "timestamp": "2026-11-01T12:00:00Z",
            "data": {"call_id": "p-1", "status": "ringing"},
        }
    ).encode()
    replies = [
        client.post(f"/webhooks/{token}", content=body, headers=signed(secret, body, msg_id="m1")),
        client.post(f"/webhooks/{token}", content=body, headers=signed(secret, body, msg_id="m1")),
        client.post(f"/webhooks/{token}", content=body, headers=signed("whsec_" + "A" * 32, body)),
        client.post("/webhooks/no-such-token", content=body, headers=signed(secret, body)),
    ]
    assert [reply.status_code for reply in replies] == [202, 202, 401, 404]


def wait_for_queue(client: redis.Redis, length: int) -> None:
    deadline = time.monotonic() + 10
    while client.llen(QUEUE) != length:
        assert time.monotonic() < deadline, f"queue never reached {length}"
        time.sleep(0.05)


def test_every_metric_on_a_seeded_database_and_redis(
    metrics_client: TestClient, runtime: Runtime, settings: Settings
) -> None:
    owner = tenant(metrics_client, "acme")
    signed_source = metrics_client.post(
        "/api/sources", json={"name": "signed", "provider": "generic"}, headers=owner.headers
    ).json()
    seed_database(runtime, owner, datetime.now(UTC))
    token = signed_source["webhook_url"].rsplit("/", 1)[1]
    send_webhooks(metrics_client, signed_source["webhook_secret"], token)
    client = redis.Redis.from_url(settings.broker_url)
    wait_for_queue(client, 1)  # the accepted event's ingest message
    client.lpush(QUEUE, b"m1", b"m2")
    client.hset("unacked", "tag-1", b"m0")
    streams.heartbeat(client, "sweep", datetime(2026, 11, 1, 12, 0, 5, tzinfo=UTC))
    ended, fast, slow = "2026-11-01T12:00:00Z", "2026-11-01T12:00:00.5Z", "2026-11-01T12:00:20Z"
    streams.publish(
        client,
        [
            StreamEntry(
                streams.CALLS_STREAM,
                "call.assembled",
                owner.org_id,
                "c1",
                {"provider": "generic", "ended_at": ended, "assembled_at": fast},
            ),
            StreamEntry(
                streams.CALLS_STREAM,
                "call.assembled",
                owner.org_id,
                "c2",
                {"provider": "vapi", "ended_at": ended, "assembled_at": slow},
            ),
            StreamEntry(streams.ALERTS_STREAM, "alert.triggered", owner.org_id, "c2", {}),
        ],
        maxlen=100,
    )

    response = metrics_client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    process = samples(response.text, prefix="process_")
    assert process.keys() >= {"process_cpu_seconds_total", "process_resident_memory_bytes"}
    assert "python_info" in response.text
    delivery_buckets = dict.fromkeys(
        ["0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "60", "300"], 1
    )
    assembly_buckets = dict.fromkeys(
        ["0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300", "600", "1800"], 0
    )
    assert samples(response.text) == {
        'callwatch_webhooks_total{outcome="accepted",provider="generic"}': "1",
        'callwatch_webhooks_total{outcome="duplicate",provider="generic"}': "1",
        'callwatch_webhooks_total{outcome="rejected",provider="generic"}': "1",
        'callwatch_webhooks_total{outcome="rejected",provider="unknown"}': "1",
        "callwatch_rate_limit_unavailable_total": "0",
        "callwatch_inbox_pending": "3",
        "callwatch_inbox_quarantined": "1",
        "callwatch_inbox_waiting_for_call": "1",
        'callwatch_calls_unfinished{assembly_state="pending"}': "1",
        'callwatch_calls_unfinished{assembly_state="fetching"}': "0",
        'callwatch_calls_unfinished{assembly_state="awaiting_recording"}': "2",
        'callwatch_calls_unfinished{assembly_state="failed"}': "1",
        'callwatch_deliveries_outstanding{state="pending"}': "2",
        'callwatch_deliveries_outstanding{state="failed"}': "1",
        'callwatch_recent_deliveries{state="pending"}': "1",
        'callwatch_recent_deliveries{state="delivered"}': "2",
        'callwatch_recent_deliveries{state="failed"}': "1",
        'callwatch_recent_deliveries{state="canceled"}': "0",
        **{
            f'callwatch_recent_delivery_latency_seconds_bucket{{le="{le}"}}': str(
                0 if float(le) < 0.05 else 1 if float(le) < 2.5 else 2
            )
            for le in delivery_buckets
        },
        'callwatch_recent_delivery_latency_seconds_bucket{le="3600"}': "2",
        'callwatch_recent_delivery_latency_seconds_bucket{le="+Inf"}': "2",
        "callwatch_recent_delivery_latency_seconds_sum": "2.04",
        "callwatch_recent_delivery_latency_seconds_count": "2",
        'callwatch_recent_delivery_attempts{outcome="delivered"}': "2",
        'callwatch_recent_delivery_attempts{outcome="retry"}': "3",
        'callwatch_recent_delivery_attempts{outcome="failed"}': "1",
        'callwatch_recent_delivery_attempts{outcome="disabled"}': "0",
        'callwatch_recent_delivery_attempts{outcome="interrupted"}': "0",
        'callwatch_recent_delivery_attempts{outcome="sending"}': "0",
        "callwatch_window_alerts_open": "1",
        'callwatch_queue_messages{queue="celery"}': "3",
        "callwatch_queue_unacked": "1",
        'callwatch_stream_entries{stream="callwatch:calls"}': "2",
        'callwatch_stream_entries{stream="callwatch:alerts"}': "1",
        'callwatch_calls_assembled_total{provider="generic"}': "1",
        'callwatch_calls_assembled_total{provider="vapi"}': "1",
        **{
            f'callwatch_assembly_latency_seconds_bucket{{le="{le}"}}': str(
                0 if float(le) < 0.5 else 1 if float(le) < 30 else 2
            )
            for le in assembly_buckets
        },
        'callwatch_assembly_latency_seconds_bucket{le="+Inf"}': "2",
        "callwatch_assembly_latency_seconds_sum": "20.5",
        "callwatch_assembly_latency_seconds_count": "2",
        'callwatch_alerts_total{type="alert.triggered"}': "1",
        'callwatch_alerts_total{type="alert.resolved"}': "0",
        "callwatch_deliveries_rate_limited_total": "0",
        'callwatch_recording_archives_total{outcome="archived"}': "0",
        'callwatch_recording_archives_total{outcome="retried"}': "0",
        'callwatch_recording_archives_total{outcome="failed"}': "0",
        "callwatch_recording_archived_bytes_total": "0",
        **{f'callwatch_purged_total{{kind="{kind}"}}': "0" for kind in PURGED_KINDS},
        "callwatch_erased_calls_total": "0",
        'callwatch_worker_heartbeat_timestamp_seconds{task="sweep"}': "1793534405",
        'callwatch_dependency_up{dependency="database"}': "1",
        'callwatch_dependency_up{dependency="redis"}': "1",
    }


def test_an_unreachable_redis_is_a_zero_not_a_failed_scrape(
    database_url: str, tmp_path: Any
) -> None:
    settings = make_settings(database_url, f"redis://127.0.0.1:{free_port()}/0", tmp_path)
    with TestClient(create_app(settings)) as client:
        response = client.get("/metrics")

    assert response.status_code == 200
    lines = response.text.splitlines()
    assert lines[-2:] == [
        'callwatch_dependency_up{dependency="database"} 1.0',
        'callwatch_dependency_up{dependency="redis"} 0.0',
    ]
    assert not any(line.startswith("callwatch_queue") for line in lines)


def test_help_text_with_a_newline_is_escaped(metrics_client: TestClient) -> None:
    text = metrics_client.get("/metrics").text

    assert "# HELP callwatch_inbox_quarantined Webhook events that could not be applied" in text
    helps = [line for line in text.splitlines() if line.startswith("# HELP ")]
    assert all(line.count("# HELP") == 1 for line in helps)
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {"callwatch_inbox_pending", "callwatch_webhooks", "process_cpu_seconds"} <= families
