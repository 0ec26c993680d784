"""An operator's bad night: signed calls of several platforms and two orgs played into the
deployed processes (web, two workers, beat) while they and their databases are crashed.

Injected mid-run, in this order, each while webhooks are arriving: a worker SIGKILLed (started
again by the "supervisor", i.e. this test), Redis SHUTDOWN NOSAVE (started again, empty),
FLUSHALL, Postgres stopped `-m immediate` and started again, a Postgres backend (intake's)
killed with kill -9, the web process SIGKILLed (started again). A process that exits by itself
is started again too, as a supervisor's restart policy does (docker-compose.yml's), and the run
reports it. Nothing else is touched: the service must recover on its own.

The ledger (ledger.py) must balance: every webhook answered 202 in the end, 202 replies =
inbox rows = applied events, calls sent = records (assembled, or failed with a reason), none
duplicated, and no reply slower than sender.DEADLINE_S.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from callwatch.intake.receiver import APPLICATION_NAME
from callwatch.simulator import PLATFORMS, DetailServer
from tests.faults import stack
from tests.faults.cluster import PostgresCluster, RedisServer, postgres_cluster, redis_server
from tests.faults.ledger import account, wait_settled
from tests.faults.sender import DEADLINE_S, Sender, Target, plan_calls, summary

pytestmark = [pytest.mark.faults, pytest.mark.timeout(480)]

# Two orgs, every platform that posts its own calls (fixa analyses another platform's calls:
# its order of arrival is the order helper's property test).
ORGS = {
    "org-a": ["generic", "vapi", "retell", "twilio", "bolna"],
    "org-b": ["telnyx", "atoms", "burki", "origins"],
}
SECRET = "faults-signing-secret"
CALLS_PER_PLATFORM = 30  # 270 calls, ~1,000 webhooks
RATE = 9.0  # calls started per second: the traffic lasts ~30 s, long enough for every fault
PLAY_S = 1.5  # a call's webhooks are spread over this
CONCURRENCY = 24
SETTLE_TIMEOUT_S = 150.0
RECOVERY_S = 5.0  # from a fault's end (a database back, a process restarted) to a 202
# Where the run's figures are written as JSON (also printed): CALLWATCH_FAULTS_REPORT, else
# the test's tmp_path.
REPORT_VARIABLE = "CALLWATCH_FAULTS_REPORT"


@dataclass
class Fault:
    at_s: float  # seconds into the traffic
    name: str
    inject: Callable[[], None]
    began: float = 0.0
    ended: float = 0.0


@pytest.fixture
def databases() -> Iterator[tuple[PostgresCluster, RedisServer]]:
    with postgres_cluster() as pg, redis_server() as rs:
        yield pg, rs


def _sources(base_url: str, details: DetailServer) -> tuple[list[Target], dict[str, str]]:
    targets, platform_of = [], {}
    for org, platforms in ORGS.items():
        key = stack.create_org(base_url, org)
        for name in platforms:
            secret_name = PLATFORMS[name].secret_name
            settings = (
                {"detail_url": details.detail_url}
                if name == "generic"
                else {"api_base_url": details.api_base_url(name)}
            )
            credentials = {"api_key": "sim-key"} | ({secret_name: SECRET} if secret_name else {})
            body = {"name": name, "provider": name, "settings": settings}
            source = stack.create_source(base_url, key, body | {"credentials": credentials})
            targets.append(Target(name, PLATFORMS[name], source["webhook_url"], SECRET))
            platform_of[source["id"]] = name
    return targets, platform_of


def test_crashes_mid_run_lose_and_duplicate_nothing(
    databases: tuple[PostgresCluster, RedisServer], tmp_path: Path
) -> None:
    pg, rs = databases
    database_url = pg.create_database("callwatch")
    port = stack.free_port()
    env = stack.environment(database_url, rs.url(0), f"http://127.0.0.1:{port}", tmp_path)
    with DetailServer() as details, stack.running(env, port, tmp_path) as deployed:
        targets, platform_of = _sources(deployed.base_url, details)
        planned = plan_calls(targets, CALLS_PER_PLATFORM, seed=21, details=details)

        def restart_redis() -> None:
            rs.shutdown_nosave()
            time.sleep(2.0)
            rs.start()

        def restart_postgres() -> None:
            pg.stop_immediate()
            time.sleep(2.0)
            pg.start()

        def kill(name: str) -> Callable[[], None]:
            def inject() -> None:
                deployed.services[name].kill()
                deployed.restart(name)  # what a supervisor does

            return inject

        # The database faults come before the web SIGKILL: they must be survived by a web
        # process that has been up a while (a fresh one hid the hang after a crash). A
        # hang would end at the SIGKILL, but not before the deadline and recovery checks.
        faults = [
            Fault(3, "worker SIGKILL", kill("worker-1")),
            Fault(6, "Redis SHUTDOWN NOSAVE (down 2 s)", restart_redis),
            Fault(11, "Redis FLUSHALL", lambda: _flushall(rs)),
            Fault(14, "Postgres stop -m immediate (down 2 s)", restart_postgres),
            Fault(20, "Postgres backend kill -9", lambda: _kill_intake_backend(pg)),
            Fault(24, "web SIGKILL", kill("web")),
            Fault(27, "worker SIGKILL", kill("worker-2")),
        ]
        sender = Sender(seed=21)
        traffic = threading.Thread(
            target=asyncio.run, args=(sender.play(planned, RATE, PLAY_S, CONCURRENCY),)
        )
        began = time.monotonic()
        traffic.start()
        for fault in faults:
            time.sleep(max(0.0, began + fault.at_s - time.monotonic()))
            fault.began = time.monotonic()
            fault.inject()
            fault.ended = time.monotonic()
        traffic.join()
        sent_s = time.monotonic() - began
        settle_s = wait_settled(database_url, SETTLE_TIMEOUT_S)
        ledger = account(database_url, sender.played, platform_of)
        dead = deployed.dead()
        logs = {name: service.log_tail(15) for name, service in deployed.services.items()}
        # SIGTERM, as a supervisor stops them: each must exit within its grace period.
        stopped = deployed.stop()

    recovery = _recovery(sender, faults)
    figures = {
        "deadline_s": DEADLINE_S,
        "traffic_s": round(sent_s, 1),
        "settled_after_s": round(settle_s, 1),
        "sender": summary(sender.played),
        "ledger": ledger.figures(),
        "fault_took_s": {f"{f.at_s:g}s {f.name}": round(f.ended - f.began, 2) for f in faults},
        "first_202_after_fault_s": recovery,
        "problems": ledger.problems(),
        "dead_processes": dead,
        "exited_by_themselves": deployed.exits,
        "exit_codes_on_sigterm": stopped,
    }
    report = Path(os.environ.get(REPORT_VARIABLE) or tmp_path / "last_run.json")
    report.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    assert dead == [], logs
    assert ledger.problems() == {}
    assert [name for name, code in stopped.items() if code is None] == []  # none hung
    assert {name: s for name, s in recovery.items() if s is None or s > RECOVERY_S} == {}
    assert ledger.answered_202 == ledger.webhooks_sent
    assert ledger.inbox_rows == ledger.applied
    assert ledger.call_rows == ledger.calls_sent
    assert ledger.assembled + len(ledger.failed_with_reason) == ledger.calls_sent


def _flushall(rs: RedisServer) -> None:
    redis.Redis(port=rs.port).flushall()


def _kill_intake_backend(pg: PostgresCluster) -> None:
    """kill -9 the backend of intake's connection (any backend would do: Postgres then resets
    them all); waits a little for one if intake is between connections."""
    deadline = time.monotonic() + 5
    while True:
        try:
            pg.kill_backend(APPLICATION_NAME)
            return
        except LookupError:
            if time.monotonic() > deadline:
                pg.kill_backend("callwatch")
                return
            time.sleep(0.1)


def _recovery(sender: Sender, faults: list[Fault]) -> dict[str, float | None]:
    """Seconds from each fault's end to the first 202 after it: recovery, unaided."""
    answered = sorted(
        attempt.started + attempt.latency_s
        for call in sender.played
        for webhook in call.webhooks
        for attempt in webhook.attempts
        if attempt.status == 202
    )
    out: dict[str, float | None] = {}
    for fault in faults:
        after = [moment for moment in answered if moment >= fault.ended]
        key = f"{fault.at_s:g}s {fault.name}"
        out[key] = round(after[0] - fault.ended, 2) if after else None
    return out
