"""Query API speed on a seeded database: list, get, stats and export, measured over HTTP.

Usage (from the repository root):

    uv run python bench/queries.py [--calls 1000000] [--requests 100] [--warmup 5]
        [--keep | --reuse] [--under-load 60] [--postgres postgresql://postgres@127.0.0.1:5432/test]

What it does:

1. A database: by default a fresh one (created, migrated, dropped at the end) seeded by
   bench/seed.py with `--calls` calls for the org "acme" plus 5 % as many for "globex" (org
   scoping is real: the same agent ids exist in both). `--keep` seeds the persistent database
   `bench_queries_keep` instead (dropped and recreated first) and leaves it behind for EXPLAIN;
   `--reuse` skips seeding and measures `bench_queries_keep` as it is (a new acme API key is
   issued for the run).
2. Its own `redis-server` on a free port (the shared one may be FLUSHALLed by test runs at any
   moment) and `python -m callwatch serve` (one uvicorn process, as in production) on another.
3. Every case: `--warmup` unmeasured requests, then `--requests` sequential requests over one
   keep-alive connection (http.client: well under a millisecond of client cost), parameters
   rotating through real values (the busiest agents, existing customer numbers, random call
   ids). Every reply must be 200 and is checked (org scoping, filters honoured); anything odd
   is listed at the end. Reported: p50 / p95 / max wall time, "srvCPU ms": the server process's
   CPU per request (the rest of the wall time is mostly Postgres), and the 1-minute load average
   at the end of the case (the machine is shared: read the figures with it).
4. Export of the newest 100,000 acme calls (a `date_from` that selects exactly them) as NDJSON
   and as CSV, streamed and counted by the client: rows/s, and the server's RSS before, its
   peak while streaming (/proc/<pid>/status VmRSS sampled every 10 ms) and VmHWM after.

5. With `--under-load CALLS_PER_S`, all of it runs while simulated calls flow end to end at that
   rate into the same database (bench/traffic.py: two workers, a detail server, an org and
   source "traffic"); at the end the pipeline's ledger (sent = assembled + failed) must balance
   and its rate be >= 50 calls/s. Measure once quiet and once under load, and report both.

Goals (the issue's "Query API" performance part): GET /api/calls with typical filters
p95 < 30 ms, and the deep page (skip=500000) bounded, read here as p95 < 500 ms;
GET /api/calls/{id} p95 < 5 ms; every GET /api/stats case < 100 ms p95 (issue 23: one agent over
30 days, the whole org over 90 days, grouped by agent and by day); export
>= 20,000 rows/s with flat memory, read here as a peak RSS growth < 64 MiB over the idle server.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness
import psycopg
import seed
import traffic

KEEP_DATABASE = "bench_queries_keep"
GOAL_LIST_MS = 30.0
GOAL_DEEP_MS = 500.0
GOAL_GET_MS = 5.0
GOAL_STATS_AGENT_MS = 100.0  # issue 23: every stats case < 100 ms p95
GOAL_STATS_ORG_MS = 100.0
GOAL_EXPORT_ROWS_S = 20_000.0
GOAL_EXPORT_RSS_MIB = 64.0
GOAL_UNDER_LOAD_CALLS_S = 50.0
EXPORT_ROWS = 100_000


# ---------------------------------------------------------------- client and measurements


class Client:
    """Sequential requests over one keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int, api_key: str) -> None:
        self.port = port
        self.headers = {"authorization": f"Bearer {api_key}"}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str, params: dict[str, Any] | None = None) -> tuple[int, bytes, float]:
        """(status, body, seconds) of one GET."""
        url = path + ("?" + urlencode(params, doseq=True) if params else "")
        began = time.perf_counter()
        self.connection.request("GET", url, headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - began

    def close(self) -> None:
        self.connection.close()


@dataclass
class Case:
    name: str
    goal: str
    limit_ms: float | None  # p95 must be below; None: no goal, shown for information
    latencies: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    load: float = 0.0
    note: str = ""

    @property
    def p95_ms(self) -> float:
        return harness.percentile(sorted(self.latencies), 0.95) * 1000

    @property
    def met(self) -> bool | None:
        if self.limit_ms is None:
            return None
        return self.p95_ms < self.limit_ms

    def row(self) -> str:
        ordered = sorted(self.latencies)
        n = len(ordered)
        cpu = self.server_cpu_s / n * 1000 if n else float("nan")
        verdict = {None: "-", True: "MET", False: "MISSED"}[self.met]
        return (
            f"{self.name:<46} {n:>4} {harness.percentile(ordered, 0.5) * 1000:>8.1f} "
            f"{self.p95_ms:>8.1f} {(ordered[-1] if ordered else float('nan')) * 1000:>8.1f} "
            f"{cpu:>9.1f} {self.load:>5.2f}  {self.goal:<14} {verdict}"
        )


HEADER = (
    f"{'case':<46} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
    f"{'srvCPU ms':>9} {'load1':>5}  {'goal':<14} result"
)


@dataclass
class Export:
    name: str
    rows: int
    seconds: float
    megabytes: float
    rss_before_mib: float
    rss_peak_mib: float
    hwm_after_mib: float
    server_cpu_s: float
    load: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.rows == EXPORT_ROWS

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def growth_mib(self) -> float:
        return self.rss_peak_mib - self.rss_before_mib

    def rows_text(self) -> list[str]:
        fast = self.ok and self.rows_per_s >= GOAL_EXPORT_ROWS_S
        flat = self.ok and self.growth_mib < GOAL_EXPORT_RSS_MIB
        cpu = self.server_cpu_s / self.seconds if self.seconds else 0.0
        out = [
            f"{self.name:<46} {self.rows:>7} rows {self.seconds:>6.2f} s "
            f"{self.megabytes:>7.1f} MB {self.rows_per_s:>9,.0f} rows/s  server CPU {cpu:>4.0%} "
            f"load1 {self.load:.2f}  goal >= {GOAL_EXPORT_ROWS_S:,.0f} rows/s  "
            f"{'MET' if fast else 'MISSED'}",
            f"{'':<46} RSS before {self.rss_before_mib:.0f} MiB, peak {self.rss_peak_mib:.0f} "
            f"MiB (+{self.growth_mib:.0f} MiB), VmHWM after {self.hwm_after_mib:.0f} MiB  "
            f"goal growth < {GOAL_EXPORT_RSS_MIB:.0f} MiB  {'MET' if flat else 'MISSED'}",
        ]
        if not self.ok:
            out.append(f"{'':<46} FAILED: {self.error or 'wrong row count'}")
        return out


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM of a process in MiB (Linux)."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


class RssSampler:
    """The peak VmRSS of a process, sampled every 10 ms in a thread while in the `with`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, memory_mib(self.pid).get("VmRSS", 0.0))
            self._stop.wait(0.01)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- what the database holds


@dataclass
class Facts:
    """Real values from the seeded database to build requests from."""

    org_id: str
    other_org_id: str
    api_key: str
    calls: int
    newest: datetime
    agents: list[tuple[str, int]]  # (agent id, calls), busiest first
    call_ids: list[tuple[str, str]]  # (id, provider call id), random
    customers: list[str]
    export_from: datetime  # started_at of the 100,000th newest acme call
    sizes: dict[str, str]
    settings: str  # the Postgres settings that matter most here


def facts_of(database_url: str, api_key: str | None) -> Facts:
    with psycopg.connect(database_url, autocommit=True) as connection:
        orgs: dict[str, str] = dict(connection.execute("SELECT name, id FROM orgs").fetchall())
        org_id, other = orgs[seed.MAIN_ORG], orgs[seed.OTHER_ORG]
        if api_key is None:
            api_key = issue_key(database_url, org_id)
        agents = connection.execute(
            "SELECT agent_id, count(*) FROM calls WHERE org_id = %s GROUP BY agent_id "
            "ORDER BY count(*) DESC",
            [org_id],
        ).fetchall()
        calls = sum(count for _, count in agents)
        sample = connection.execute(
            "SELECT id, provider_call_id, customer_number FROM calls TABLESAMPLE SYSTEM (1) "
            "WHERE org_id = %s AND customer_number IS NOT NULL LIMIT 2000",
            [org_id],
        ).fetchall()
        newest = connection.execute(
            "SELECT max(started_at) FROM calls WHERE org_id = %s", [org_id]
        ).fetchone()
        cut = connection.execute(
            "SELECT started_at FROM calls WHERE org_id = %s "
            "ORDER BY started_at DESC, id DESC OFFSET %s LIMIT 1",
            [org_id, EXPORT_ROWS - 1],
        ).fetchone()
        sizes = connection.execute(
            "SELECT pg_size_pretty(pg_relation_size('calls')), "
            "pg_size_pretty(pg_table_size('calls') - pg_relation_size('calls')), "
            "pg_size_pretty(pg_indexes_size('calls')), "
            "pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()
        settings = ", ".join(
            f"{name} {connection.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
            for name in ("shared_buffers", "work_mem", "jit", "max_parallel_workers_per_gather")
        )
        version = connection.info.server_version
    assert newest is not None
    assert sizes is not None
    return Facts(
        org_id=org_id,
        other_org_id=other,
        api_key=api_key,
        calls=calls,
        newest=newest[0],
        agents=[(agent or "", count) for agent, count in agents],
        call_ids=[(call_id, provider_id) for call_id, provider_id, _ in sample],
        customers=[customer for _, _, customer in sample],
        export_from=cut[0] if cut else datetime(2000, 1, 1, tzinfo=UTC),
        sizes=dict(zip(("heap", "toast", "indexes", "database"), sizes, strict=True)),
        settings=f"Postgres {version // 10000}.{version % 10000}: {settings}",
    )


def issue_key(database_url: str, org_id: str) -> str:
    from callwatch.db import make_engine, make_sessionmaker, transaction
    from callwatch.orgs import keys

    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            return keys.issue(session, org_id, datetime.now(UTC), name="bench")[1]
    finally:
        engine.dispose()


# ---------------------------------------------------------------- the run


class Checks:
    """Replies that are not what the request asked for."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, problem: str) -> None:
        if problem not in self.problems and len(self.problems) < 50:
            self.problems.append(problem)


def measure(
    client: Client,
    server_pid: int,
    case: Case,
    requests: int,
    warmup: int,
    make: Callable[[int], tuple[str, dict[str, Any]]],
    check: Callable[[dict[str, Any] | list[Any], dict[str, Any]], str | None],
    checks: Checks,
) -> Case:
    for index in range(warmup):
        path, params = make(-1 - index)
        client.get(path, params)
    cpu_before = harness.cpu_seconds(server_pid)
    replies = []
    for index in range(requests):
        path, params = make(index)
        status, body, seconds = client.get(path, params)
        case.latencies.append(seconds)
        replies.append((status, body, params))
    case.server_cpu_s = harness.cpu_seconds(server_pid) - cpu_before
    case.load = os.getloadavg()[0]
    for status, body, params in replies:
        if status != 200:
            checks.add(f"{case.name}: HTTP {status} for {params}: {body[:300]!r}")
            continue
        problem = check(json.loads(body), params)
        if problem:
            checks.add(f"{case.name}: {problem} (params {params})")
    print(case.row(), flush=True)
    return case


def export(
    port: int, api_key: str, server_pid: int, name: str, params: dict[str, Any], org_id: str
) -> Export:
    before = memory_mib(server_pid).get("VmRSS", 0.0)
    cpu_before = harness.cpu_seconds(server_pid)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    lines = 0
    size = 0
    first = b""
    error = ""
    with RssSampler(server_pid) as sampler:
        began = time.perf_counter()
        connection.request(
            "GET",
            "/api/calls/export?" + urlencode(params),
            headers={"authorization": f"Bearer {api_key}"},
        )
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"export {name}: HTTP {response.status} {response.read()[:300]!r}")
        try:
            while chunk := response.read(1 << 20):
                if not first:
                    first = chunk[: chunk.find(b"\n") + 1]
                lines += chunk.count(b"\n")
                size += len(chunk)
        except (http.client.HTTPException, OSError) as exc:
            # A 200 whose body breaks off: the server failed mid-stream.
            error = f"the stream broke off after {size:,} bytes: {exc!r}"[:200]
        seconds = time.perf_counter() - began
    connection.close()
    rows = lines - 1 if params.get("format") == "csv" else lines
    if params.get("format") != "csv" and first:
        head = json.loads(first)
        if head.get("org_id") != org_id:
            error = error or f"first row of another org: {head.get('org_id')}"
    return Export(
        name=name,
        rows=rows,
        seconds=seconds,
        megabytes=size / 1e6,
        rss_before_mib=before,
        rss_peak_mib=max(sampler.peak, before),
        hwm_after_mib=memory_mib(server_pid).get("VmHWM", 0.0),
        server_cpu_s=harness.cpu_seconds(server_pid) - cpu_before,
        load=os.getloadavg()[0],
        error=error,
    )


def day(moment: datetime) -> str:
    return moment.date().isoformat()


def items_check(
    org_id: str, test: Callable[[dict[str, Any]], bool] | None = None, label: str = ""
) -> Callable[[Any, dict[str, Any]], str | None]:
    def check(reply: Any, params: dict[str, Any]) -> str | None:
        items = reply.get("items", [])
        if not isinstance(reply.get("total"), int):
            return "no total"
        if any(item.get("org_id") != org_id for item in items):
            return "an item of another org"
        if test is not None and not all(test(item) for item in items):
            return f"an item not matching {label}"
        if "skip" in params and reply.get("skip") != params["skip"]:
            return f"skip echoed as {reply.get('skip')}"
        return None

    return check


def other_cases(
    add: Callable[..., None],
    facts: Facts,
    top: list[str],
    newest: datetime,
    customers: list[str],
    ids: list[tuple[str, str]],
    rng: random.Random,
    requests: int,
) -> None:
    """The list and get cases."""
    org = facts.org_id
    list_goal = f"p95 < {GOAL_LIST_MS:.0f} ms"
    add(
        "list: no filter (newest 100)",
        list_goal,
        GOAL_LIST_MS,
        lambda i: ("/api/calls", {}),
        items_check(org),
    )
    add(
        "list: agent_id (10 busiest, rotating)",
        list_goal,
        GOAL_LIST_MS,
        lambda i: ("/api/calls", {"agent_id": top[i % len(top)]}),
        items_check(org, lambda item: item["agent_id"] in top, "agent"),
    )

    def agent_status_range(i: int) -> tuple[str, dict[str, Any]]:
        end = newest - timedelta(days=i % 60)
        return "/api/calls", {
            "agent_id": top[i % len(top)],
            "status": "completed",
            "date_from": day(end - timedelta(days=30)),
            "date_to": day(end),
        }

    add(
        "list: agent + status=completed + 30 days",
        list_goal,
        GOAL_LIST_MS,
        agent_status_range,
        items_check(org, lambda item: item["status"] == "completed", "status"),
    )
    add(
        "list: customer_phone 4 digits, skip=100",
        list_goal,
        GOAL_LIST_MS,
        lambda i: (
            "/api/calls",
            {"customer_phone": customers[i % len(customers)][-4:], "skip": 100},
        ),
        items_check(org),
    )
    add(
        "list: customer_phone last 7 digits",
        list_goal,
        GOAL_LIST_MS,
        lambda i: ("/api/calls", {"customer_phone": customers[i % len(customers)][-7:]}),
        items_check(org),
    )
    add(
        "list: status=no_answer",
        list_goal,
        GOAL_LIST_MS,
        lambda i: ("/api/calls", {"status": "no_answer"}),
        items_check(org, lambda item: item["status"] == "no_answer", "status"),
    )
    add(
        "list: status=failed,busy + 7 days, page=2",
        list_goal,
        GOAL_LIST_MS,
        lambda i: (
            "/api/calls",
            {
                "status": ["failed", "busy"],
                "date_from": day(newest - timedelta(days=7 + i % 30)),
                "page": 2,
                "limit": 50,
            },
        ),
        items_check(org, lambda item: item["status"] in ("failed", "busy"), "status"),
    )
    add(
        "list: direction=inbound, page=2, limit=50",
        list_goal,
        GOAL_LIST_MS,
        lambda i: ("/api/calls", {"direction": "inbound", "page": 2, "limit": 50}),
        items_check(org, lambda item: item["direction"] == "inbound", "direction"),
    )
    add(
        "list: deep page skip=500000",
        f"p95 < {GOAL_DEEP_MS:.0f} ms",
        GOAL_DEEP_MS,
        lambda i: ("/api/calls", {"skip": 500_000}),
        items_check(org),
        count=max(10, requests // 5),
    )

    def one(reply: Any, params: dict[str, Any]) -> str | None:
        return None if reply.get("org_id") == org else "a record of another org"

    get_goal = f"p95 < {GOAL_GET_MS:.0f} ms"
    add(
        "get: /api/calls/{id} by callwatch id",
        get_goal,
        GOAL_GET_MS,
        lambda i: (f"/api/calls/{ids[i % len(ids)][0]}", {}),
        one,
    )
    add(
        "get: /api/calls/{id} by provider call id",
        get_goal,
        GOAL_GET_MS,
        lambda i: (f"/api/calls/{ids[(i + 500) % len(ids)][1]}", {}),
        one,
    )


def run_cases(
    port: int,
    server_pid: int,
    facts: Facts,
    requests: int,
    warmup: int,
    checks: Checks,
    *,
    only_stats: bool = False,
    label: str = "",
) -> tuple[list[Case], list[Export]]:
    rng = random.Random(7)
    client = Client(port, facts.api_key)
    org = facts.org_id
    top = [agent for agent, _ in facts.agents[:10]]
    busiest = [agent for agent, _ in facts.agents[:5]]
    newest = facts.newest
    customers = facts.customers
    ids = facts.call_ids[:]
    rng.shuffle(ids)
    cases: list[Case] = []

    def add(
        name: str,
        goal: str,
        limit_ms: float | None,
        make: Callable[[int], tuple[str, dict[str, Any]]],
        check: Callable[[Any, dict[str, Any]], str | None],
        count: int = requests,
    ) -> None:
        case = Case(name, goal, limit_ms)
        cases.append(measure(client, server_pid, case, count, warmup, make, check, checks))

    print(HEADER, flush=True)
    if not only_stats:
        other_cases(add, facts, top, newest, customers, ids, rng, requests)

    def agent_stats(i: int) -> tuple[str, dict[str, Any]]:
        end = newest - timedelta(days=i % 30)
        return "/api/stats", {
            "agent_id": busiest[i % len(busiest)],
            "date_from": day(end - timedelta(days=29)),
            "date_to": day(end),
        }

    def stats_check(reply: Any, params: dict[str, Any]) -> str | None:
        overall = reply.get("overall", {})
        if overall.get("calls", 0) <= 0:
            return "no calls counted"
        if sum(overall.get("by_status", {}).values()) != overall["calls"]:
            return "by_status does not add up to calls"
        return None

    stats_count = max(10, requests // 5)
    add(
        f"stats{label}: one agent (5 busiest), 30 days",
        f"p95 < {GOAL_STATS_AGENT_MS:.0f} ms",
        GOAL_STATS_AGENT_MS,
        agent_stats,
        stats_check,
        count=stats_count,
    )
    org_range = {
        "date_from": day(newest - timedelta(days=89)),
        "date_to": day(newest),
    }
    org_goal = f"p95 < {GOAL_STATS_ORG_MS:.0f} ms"
    add(
        f"stats{label}: whole org, 90 days",
        org_goal,
        GOAL_STATS_ORG_MS,
        lambda i: ("/api/stats", org_range),
        stats_check,
        count=stats_count,
    )
    add(
        f"stats{label}: whole org, 90 days, group_by=agent",
        org_goal,
        GOAL_STATS_ORG_MS,
        lambda i: ("/api/stats", org_range | {"group_by": "agent"}),
        stats_check,
        count=stats_count,
    )
    add(
        f"stats{label}: whole org, 90 days, group_by=day",
        org_goal,
        GOAL_STATS_ORG_MS,
        lambda i: ("/api/stats", org_range | {"group_by": "day"}),
        stats_check,
        count=stats_count,
    )
    client.close()

    exports: list[Export] = []
    if only_stats:
        return cases, exports
    since = facts.export_from.isoformat()
    for fmt in ("ndjson", "csv"):
        result = export(
            port,
            facts.api_key,
            server_pid,
            f"export: newest {EXPORT_ROWS:,} as {fmt}",
            {"format": fmt, "date_from": since},
            org,
        )
        for line in result.rows_text():
            print(line, flush=True)
        if not result.ok:
            checks.add(f"export {fmt}: {result.rows:,} rows of {EXPORT_ROWS:,}; {result.error}")
        exports.append(result)
    return cases, exports


@contextlib.contextmanager
def database(args: argparse.Namespace) -> Iterator[tuple[str, seed.SeedResult | None]]:
    """The database to measure and, if seeded by this run, the seeding figures."""
    if not (args.keep or args.reuse):
        with harness.temp_database(args.postgres, "bench_queries") as url:
            yield url, do_seed(url, args)
        return
    server = args.postgres.rsplit("/", 1)[0]
    url = f"{server}/{args.database}"
    if args.reuse:
        yield url, None
        return
    from callwatch.migrate import upgrade

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{args.database}"')
    upgrade(url)
    yield url, do_seed(url, args)


def do_seed(url: str, args: argparse.Namespace) -> seed.SeedResult:
    print(f"seeding {args.calls:,} + {args.calls // 20:,} calls ...", flush=True)
    result = seed.seed(url, calls_count=args.calls, other_calls=args.calls // 20)
    seed.report(result)
    return result


def bench(args: argparse.Namespace) -> int:
    print(
        f"query API benchmark: {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    with database(args) as (database_url, seeded):
        main_key = None
        if seeded is not None:
            main_key = seeded.orgs[0].api_key
        facts = facts_of(database_url, main_key)
        print(
            f"database {database_url.rsplit('/', 1)[1]}: acme {facts.calls:,} calls, "
            f"{len(facts.agents)} agents (busiest {facts.agents[0][1]:,} calls, median "
            f"{facts.agents[len(facts.agents) // 2][1]:,}); calls heap {facts.sizes['heap']}, "
            f"TOAST {facts.sizes['toast']}, indexes {facts.sizes['indexes']}, database "
            f"{facts.sizes['database']}",
            flush=True,
        )
        print(facts.settings, flush=True)
        redis_port = harness.free_port()
        redis_argv = [
            "redis-server",
            "--port",
            str(redis_port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        port = harness.free_port()
        base = f"http://127.0.0.1:{port}"
        env = harness.callwatch_env(database_url, f"redis://127.0.0.1:{redis_port}/0", base)
        checks = Checks()
        cases: list[Case] = []
        ledger = None
        with quiet_child(redis_argv) as redis_server:
            wait_redis(redis_port, redis_server)
            if args.stats_baseline:
                # Before the rollups: every stats request reads the calls (stats_exact).
                exact = env | {"CALLWATCH_STATS_EXACT_UP_TO": str(10**12)}
                with harness.serve(exact, port) as server:
                    harness.wait_http(base + "/healthz", server)
                    print("stats from the calls (the baseline, as before the rollups):")
                    cases, _ = run_cases(
                        port,
                        server.pid,
                        facts,
                        args.requests,
                        args.warmup,
                        checks,
                        only_stats=True,
                        label=" (calls)",
                    )
                print()
            with (
                harness.serve(env, port) as server,
                harness.engine_for(database_url) as engine,
                contextlib.ExitStack() as load,
            ):
                harness.wait_http(base + "/healthz", server)
                idle = memory_mib(server.pid)
                print(f"server pid {server.pid}, RSS at start {idle.get('VmRSS', 0):.0f} MiB\n")
                if args.under_load:
                    redis_url = f"redis://127.0.0.1:{redis_port}/0"
                    flowing = traffic.flowing(base, env, redis_url, engine, args.under_load)
                    ledger = load.enter_context(flowing)
                    print(f"pipeline traffic offered at {args.under_load:g} calls/s\n", flush=True)
                measured, exports = run_cases(
                    port,
                    server.pid,
                    facts,
                    args.requests,
                    args.warmup,
                    checks,
                    only_stats=args.only_stats,
                )
                cases += measured
        summarize(cases, exports, seeded, checks)
    if ledger is not None:
        print(ledger.text())
        kept_up = ledger.calls_per_s >= GOAL_UNDER_LOAD_CALLS_S
        print(f"goal >= {GOAL_UNDER_LOAD_CALLS_S:g} calls/s: {'MET' if kept_up else 'MISSED'}")
        if not ledger.balanced:
            return 1
    return 1 if checks.problems else 0


@contextlib.contextmanager
def quiet_child(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """harness.child with stdout discarded (redis-server logs its banner there)."""
    process = subprocess.Popen(
        argv, cwd=harness.ROOT, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield process
    finally:
        harness.stop_child(process)


def wait_redis(port: int, process: subprocess.Popen[bytes]) -> None:
    import redis

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("redis-server exited")
        with contextlib.suppress(redis.RedisError):
            if redis.Redis(port=port, socket_timeout=1).ping():
                return
        time.sleep(0.05)
    raise RuntimeError("redis-server did not come up")


def summarize(
    cases: list[Case], exports: list[Export], seeded: seed.SeedResult | None, checks: Checks
) -> None:
    print()
    if seeded is not None:
        print(
            f"seeding: {seeded.calls:,} calls in {seeded.load_s:.0f} s "
            f"({seeded.rows_per_s:,.0f} rows/s), VACUUM ANALYZE {seeded.vacuum_s:.0f} s, "
            f"total {seeded.total_s:.0f} s"
        )
    missed = [case.name for case in cases if case.met is False]
    goals = len([case for case in cases if case.met is not None])
    met = goals - len(missed)
    for item in exports:
        speed = item.ok and item.rows_per_s >= GOAL_EXPORT_ROWS_S
        flat = item.ok and item.growth_mib < GOAL_EXPORT_RSS_MIB
        goals, met = goals + 2, met + speed + flat
        missed += [f"{item.name} rows/s"] if not speed else []
        missed += [f"{item.name} memory"] if not flat else []
    print(f"goals: {met} of {goals} met" + (f"; MISSED: {missed}" if missed else ""))
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if checks.problems:
        print("API replies that look wrong:")
        for problem in checks.problems:
            print(f"  - {problem}")
    else:
        print("every reply was 200 and matched its filters and org")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100, help="measured requests per case")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured requests per case")
    parser.add_argument(
        "--under-load",
        type=float,
        metavar="CALLS_PER_S",
        help="measure while simulated calls flow end to end at this rate (bench/traffic.py)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--keep", action="store_true", help=f"seed and keep {KEEP_DATABASE}")
    mode.add_argument("--reuse", action="store_true", help=f"measure {KEEP_DATABASE} as it is")
    parser.add_argument(
        "--database", default=KEEP_DATABASE, help="the database --keep seeds and --reuse measures"
    )
    parser.add_argument(
        "--stats-baseline",
        action="store_true",
        help="first measure the stats cases from the calls (no rollups), as before issue 23",
    )
    parser.add_argument("--only-stats", action="store_true", help="skip the list/get/export cases")
    parser.add_argument("--postgres", default=harness.DEFAULT_PG)
    args = parser.parse_args()
    return harness.run_main(bench, args)


if __name__ == "__main__":
    sys.exit(main())
