"""Hostile input against the shipped server (`callwatch serve`, its own Postgres and Redis):
intake of every provider (hostile.py) and every API operation (schemathesis, from the
server's own /openapi.json, schema-conforming and schema-violating cases). no 5xx.

Every 5xx (or dropped connection) is collected with its input and all are reported at once.
CALLWATCH_FUZZ_EXAMPLES sets the examples per provider and per API operation and mode.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from callwatch.simulator import PLATFORMS, DetailServer
from tests.faults import stack
from tests.faults.cluster import postgres_cluster, redis_server
from tests.faults.hostile import Request, corpus, requests_for, seeds
from tests.faults.ledger import UNFINISHED, wait_settled
from tests.faults.sender import Target

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

EXAMPLES = int(os.environ.get("CALLWATCH_FUZZ_EXAMPLES", "60"))
SECRET = "fuzz-signing-secret"


@dataclass
class Served:
    base_url: str
    api_key: str
    targets: dict[str, Target]
    database_url: str


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """web, one worker and beat (accepted hostile events are processed too) on a cluster of
    their own, with an org that has a source of every provider."""
    with (
        postgres_cluster() as pg,
        redis_server() as rs,
        DetailServer() as details,
        tempfile.TemporaryDirectory(prefix="callwatch-fuzz-") as logs,
    ):
        database_url = pg.create_database("callwatch")
        port = stack.free_port()
        base = f"http://127.0.0.1:{port}"
        env = stack.environment(database_url, rs.url(0), base, Path(logs))
        with stack.running(env, port, Path(logs), ("web", "worker-1", "beat")) as deployed:
            key = stack.create_org(deployed.base_url, "fuzz")
            targets = {}
            for name, platform in PLATFORMS.items():
                settings_ = (
                    {"detail_url": details.detail_url}
                    if name == "generic"
                    else {"api_base_url": details.api_base_url(name)}
                )
                credentials = {"api_key": "sim-key"}
                if platform.secret_name:
                    credentials[platform.secret_name] = SECRET
                body = {"name": name, "provider": name, "settings": settings_}
                source = stack.create_source(base, key, body | {"credentials": credentials})
                targets[name] = Target(name, platform, source["webhook_url"], SECRET)
            yield Served(base, key, targets, database_url)


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every CI run
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize("provider", list(PLATFORMS))
def test_no_hostile_webhook_gets_a_5xx(served: Served, provider: str) -> None:
    target = served.targets[provider]
    bodies = seeds(provider)
    strategy = requests_for(target, bodies)
    found: list[str] = []
    statuses: dict[int, int] = {}

    with httpx.Client(timeout=15.0) as client:

        def send(request: Request) -> None:
            try:
                headers = [(name.encode(), value) for name, value in request.headers.items()]
                response = client.post(request.url, content=request.content, headers=headers)
            except httpx.HTTPError as exc:
                found.append(f"{type(exc).__name__} for {request.describe()}")
                return
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                found.append(
                    f"{response.status_code} {response.text[:200]} for {request.describe()}"
                )

        @FUZZ_SETTINGS
        @given(request=strategy)
        def fuzz(request: Request) -> None:
            send(request)

        for request in corpus(target, bodies):
            send(request)
        fuzz()
    print(f"{provider}: {sum(statuses.values())} requests, by status {sorted(statuses.items())}")
    print("\n".join(found))
    assert found == []


def _schema(base_url: str) -> Any:
    return schemathesis.openapi.from_url(base_url + "/openapi.json")


def test_no_api_request_gets_a_5xx(served: Served) -> None:
    schema = _schema(served.base_url)
    org = {"authorization": f"Bearer {served.api_key}"}
    admin = {"authorization": f"Bearer {stack.ADMIN_TOKEN}"}
    found: list[str] = []
    total = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        headers = admin if operation.path.startswith("/api/admin") else org
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            total += _fuzz(operation, mode, served.base_url, headers, found)
    print(f"API: {total} cases")
    print("\n".join(found))
    assert found == []


def _fuzz(
    operation: Any, mode: GenerationMode, base_url: str, headers: dict[str, str], found: list[str]
) -> int:
    """Call `operation` with Hypothesis's cases of `mode`; 5xx go to `found`; the cases run."""
    cases = 0

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: Any) -> None:
        nonlocal cases
        cases += 1
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=15)
        except requests.RequestException as exc:
            found.append(f"{type(exc).__name__} for {_show(case)}")
            return
        if response.status_code >= 500:
            found.append(f"{response.status_code} {response.text[:200]} for {_show(case)}")

    with contextlib.suppress(Unsatisfiable):  # nothing schema-violating for what takes nothing
        call()
    return cases


def _show(case: Any) -> str:
    body = "" if case.body is None else f" body {str(case.body)[:300]!r}"
    return (
        f"{case.method} {case.formatted_path} query {case.query} "
        f"headers {dict(case.headers or {})}{body}"
    )


SETTLE_S = 60.0  # the sweeper's 10 re-sends, 3 s apart at the suite's timings, fit in it


def test_every_accepted_hostile_event_is_applied_or_failed_with_a_reason(served: Served) -> None:
    """What got a 202 above is applied by the worker, or ends with its reason: never left
    pending, never dropped without one (runs after the fuzz tests of this module). An event that
    joins another source's call (fixa's analysis of a call never sent) waits for it, visibly
    (`inbox_joins`, `callwatch_inbox_waiting_for_call`)."""
    waited = wait_settled(served.database_url, SETTLE_S)
    with psycopg.connect(served.database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT id, processed_at IS NOT NULL, call_id IS NOT NULL, last_error, attempts,"
            " left(raw_body, 200) FROM inbox"
        ).fetchall()
        calls = connection.execute(
            "SELECT provider_call_id, assembly_state, assembly_last_error FROM calls"
        ).fetchall()
        waiting = {row[0] for row in connection.execute("SELECT inbox_id FROM inbox_joins")}
    pending = [f"{row[0]} attempts={row[4]} {row[5]}" for row in rows if not row[1]]
    no_reason = [
        f"{row[0]} {row[5]}"
        for row in rows
        if row[1] and not row[2] and not row[3] and row[0] not in waiting
    ]
    reasons = Counter(str(row[3])[:100] for row in rows if row[3])
    # `pending` is a call whose end has not come (a hostile status can see to that): only a
    # call the workers are on must finish.
    unfinished = [(pcid, state) for pcid, state, _ in calls if state in UNFINISHED[1:]]
    failed_silently = [pcid for pcid, state, error in calls if state == "failed" and not error]
    print(
        f"inbox: {len(rows)} rows, settled after {waited:.1f} s; "
        f"not applied, by reason: {dict(reasons)}; waiting for their call: {len(waiting)}"
    )
    print(f"calls: {Counter(state for _, state, _ in calls)}")
    print(f"failed calls, by reason: {Counter(str(e)[:100] for _, s, e in calls if s == 'failed')}")
    assert (pending, no_reason, unfinished, failed_silently) == ([], [], [], [])
