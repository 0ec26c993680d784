"""Small factories: orgs and sources through the API, assembled calls straight into the database."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import httpx
from starlette.testclient import TestClient

from callwatch import providers
from callwatch.calls import assembly, rollups, store
from callwatch.calls.fold import CallState
from callwatch.model import call_metrics
from callwatch.model.records import (
    Analysis,
    Assembly,
    CallDetails,
    CallRecord,
    Cost,
    Latency,
    Recording,
    Stats,
    TimelineEntry,
    Utterance,
)
from callwatch.providers.base import WebhookRequest
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.tables import Call
from tests.conftest import ADMIN

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Tenant:
    org_id: str
    key: str
    source_id: str
    source: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}


def tenant(client: TestClient, name: str, source: str = "main") -> Tenant:
    admin = {"authorization": f"Bearer {ADMIN}"}
    org = client.post("/api/admin/orgs", json={"name": name}, headers=admin).json()
    headers = {"authorization": f"Bearer {org['api_key']}"}
    created = client.post(
        "/api/sources", json={"name": source, "provider": "generic"}, headers=headers
    ).json()
    return Tenant(org_id=org["id"], key=org["api_key"], source_id=created["id"], source=source)


def add_source(client: TestClient, owner: Tenant, name: str) -> Tenant:
    created = client.post(
        "/api/sources", json={"name": name, "provider": "generic"}, headers=owner.headers
    ).json()
    return Tenant(owner.org_id, owner.key, created["id"], name)


def record(owner: Tenant, call_id: str, **fields: Any) -> CallRecord:
    """An assembled record; `fields` override any CallRecord field."""
    started = fields.pop("started_at", T0)
    answered = started + timedelta(seconds=5)
    values: dict[str, Any] = {
        "id": call_id,
        "org_id": owner.org_id,
        "source": owner.source,
        "provider": "generic",
        "provider_call_id": f"p-{call_id}",
        "agent_id": "sales-bot",
        "agent_name": "Sales bot",
        "direction": "outbound",
        "channel": "phone",
        "from_number": "+15550001111",
        "to_number": "+15550002222",
        "customer_number": "+15550002222",
        "status": "completed",
        "end_reason": "user_hangup",
        "created_at": started,
        "initiated_at": started,
        "answered_at": answered,
        "ended_at": answered + timedelta(seconds=60),
        "duration_s": 60.0,
        "billed_duration_s": 60.0,
        "recording": Recording(status="available", url="https://rec.example/1.wav"),
        "transcript": [Utterance(role="assistant", content="Hi!", start_s=0.5, end_s=1.0)],
        "latency": Latency(
            turn=Stats(count=2, mean=900, p50=850, p95=1200),
            llm=Stats(count=2, mean=400, p50=400, p95=500),
            time_to_first_word_ms=500,
        ),
        "cost": Cost(total=0.1, currency="USD", llm=0.05, telephony=0.05),
        "analysis": Analysis(summary="ok", success=True),
        "timeline": [TimelineEntry(status="completed", at=started, event="call.completed")],
        "assembly": Assembly(state="assembled", attempts=1, assembled_at=started),
        "updated_at": started,
    }
    return CallRecord.model_validate(values | fields)


def add_call(runtime: Runtime, owner: Tenant, call_id: str, **fields: Any) -> CallRecord:
    """Store an assembled call as the worker would, without the worker."""
    built = record(owner, call_id, **fields)
    with runtime.sessions.begin() as session:
        call = Call(
            id=built.id,
            org_id=owner.org_id,
            source_id=owner.source_id,
            provider=built.provider,
            provider_call_id=built.provider_call_id,
            started_at=built.initiated_at or T0,
            ended_at=built.ended_at,
            fields={},
            record=built.model_dump(mode="json"),
            assembly_state="assembled",
            assembly_attempts=1,
            assembly_failures=0,
            assembled_at=built.initiated_at,
            created_at=T0,
            updated_at=T0,
        )
        store.copy_columns(call, built)
        session.add(call)
        rollups.move(session, [(None, rollups.share_of(call))])  # as `store.save` would
    return built


def webhook_request(body: bytes, received_at: datetime) -> WebhookRequest:
    """A webhook as an adapter receives it, with no headers (signatures are tested apart)."""
    return WebhookRequest(
        body=body,
        headers={},
        content_type="application/json",
        client_ip=None,
        url="",
        received_at=received_at,
    )


def assembled_record(
    state: CallState,
    details: CallDetails | None,
    *,
    provider: str,
    source: str,
    provider_call_id: str,
    at: datetime,
) -> dict[str, Any]:
    """The record the pipeline stores for these events and fetched details, as JSON."""
    settled = providers.settled(provider, details, state.fields) if details else None
    merged = assembly.merge(state, settled)
    built = assembly.build(
        call_id="call_1",
        org_id="org_1",
        source=source,
        provider=provider,
        provider_call_id=provider_call_id,
        state=state,
        details=merged,
        recording=assembly.recording_of(merged, at),
        metrics=call_metrics.compute(merged, ringing_at=state.ringing_at),
        assembly=Assembly(state="assembled", attempts=1, assembled_at=at),
        updated_at=at,
    )
    return built.model_dump(mode="json")


def wait_for_call(
    client: TestClient,
    key: str,
    call_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout_s: float = 40,
) -> dict[str, Any]:
    """Poll `GET /api/calls/{call_id}` until `done(record)`; the record then."""
    deadline = time.monotonic() + timeout_s
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/api/calls/{call_id}", headers={"authorization": f"Bearer {key}"})
        if response.status_code == 200:
            record = response.json()
            if done(record):
                return record
        time.sleep(0.1)
    raise AssertionError(f"{call_id} did not get there: {record.get('assembly')}")


def in_state(state: str) -> Callable[[dict[str, Any]], bool]:
    """A `wait_for_call` condition: the record's assembly has reached `state`."""
    return lambda record: record["assembly"]["state"] == state


def post_unsigned(client: TestClient, source: dict[str, Any], body: Any) -> httpx.Response:
    """A JSON webhook to a source of a platform that does not sign (bytes are sent as they are)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        "/webhooks/" + source["webhook_url"].rsplit("/", 1)[1],
        content=content,
        headers={"content-type": "application/json"},
    )


def eventually(check: Callable[[], bool], timeout: float = 20) -> None:
    """Poll `check` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def worker_process(settings: Settings, log: IO[bytes], **env: str) -> subprocess.Popen[bytes]:
    """`callwatch worker` in a process group of its own (so it can be SIGKILLed alone), on these
    settings' database and Redis; `env` adds CALLWATCH_ variables."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("CALLWATCH_")}
    environ |= {
        "CALLWATCH_DATABASE_URL": settings.database_url,
        "CALLWATCH_REDIS_URL": settings.broker_url,
        "CALLWATCH_SECRET_KEY": "test-secret-key",
        "CALLWATCH_LOG_LEVEL": "INFO",
        "CALLWATCH_ALLOW_PRIVATE_TARGETS": str(settings.allow_private_targets).lower(),
        "CALLWATCH_FETCH_DEADLINE_S": str(settings.fetch_deadline_s),
    }
    environ |= {f"CALLWATCH_{name.upper()}": value for name, value in env.items()}
    command = [sys.executable, "-m", "callwatch", "worker", "--concurrency", "2"]
    return subprocess.Popen(
        [*command, "--hostname", "doomed@%h"],
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
