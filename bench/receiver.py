"""Webhook receiver throughput: callwatch's POST /webhooks/{token} against a bare Starlette app.

Usage (from the repository root):

    .venv/bin/python bench/receiver.py [--rounds 3] [--seconds 10] [--connections 32]
        [--warmup 1] [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--redis redis://127.0.0.1:6379/5]

What it does:

1. Baseline: a bare Starlette app (one route, 200 "ok") served by `uvicorn.run` with exactly the
   settings `callwatch serve` uses (one process, loop/http "auto" = uvloop/httptools here,
   log_level warning, no access log).
2. callwatch: a fresh Postgres database (created, migrated, dropped at the end), Redis db 5
   flushed, `python -m callwatch serve` on a free port, an org + generic source via the API.
3. Both servers stay up for `--rounds` rounds; each round loads the bare app, then callwatch
   (one server at a time, the other idle), so each callwatch round has a baseline measured a
   few seconds before it: on a shared 2-core machine the speed drifts by tens of percent
   within minutes. The load generator: a separate process running a minimal asyncio HTTP/1.1
   keep-alive client (raw protocol, no httpx: httpx needs ~3x the CPU per request and would
   saturate before the server does), `--connections` connections, one request in flight per
   connection, for `--warmup` + `--seconds` seconds. Requests are distinct, signed generic
   `call.status_changed` webhooks (unique call ids), generated right before each run so the
   Standard Webhooks ±5 min timestamp window holds. Only requests started after the warm-up
   count towards req/s and latency; every reply counts towards the status ledger.
4. Prints req/s, p50, p99 for each run, the callwatch/bare ratio of each round, their median
   and the median p99 against the goal (ratio >= 0.25, p99 < 20 ms), client and server CPU
   use (a client near 100 % CPU means the numbers are client-bound), and the durability
   ledger: inbox rows == 202 replies.

Internal modes (used by the script itself): `--bare-server PORT`, `--load JSON`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness

GOAL_RATIO = 0.25
GOAL_P99_MS = 20.0
BARE_SECRET = "whsec_" + "A" * 44  # the bare app ignores the signature


# ---------------------------------------------------------------- bare server


def run_bare_server(port: int) -> None:
    import uvicorn

    # The same call as `callwatch serve` (src/callwatch/cli.py: cmd_serve).
    uvicorn.run(
        harness.bare_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


# ---------------------------------------------------------------- load generator


@dataclass
class LoadSpec:
    url: str
    secret: str
    seconds: float
    warmup: float
    connections: int
    max_rate: int
    server_pid: int
    cycle: bool  # reuse requests when used up (only for the bare app, which ignores them)


@dataclass
class LoadResult:
    requests: int = 0  # replies to requests started after the warm-up
    elapsed_s: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)  # all replies, warm-up included
    errors: int = 0
    exhausted: bool = False
    generated: int = 0
    client_cpu: float = 0.0  # CPU seconds / wall seconds of the load process
    server_cpu: float = 0.0  # the same for the server process (all its threads)


def build_requests(spec: LoadSpec) -> list[bytes]:
    """The HTTP/1.1 bytes of distinct signed webhooks, enough for the whole run."""
    count = 5000 if spec.cycle else int(spec.max_rate * (spec.seconds + spec.warmup)) + 1000
    return [
        harness.raw_request(spec.url, content, headers)
        for content, headers in harness.signed_webhooks(spec.secret, count)
    ]


async def _drive(spec: LoadSpec, requests: list[bytes]) -> LoadResult:
    parts = urlsplit(spec.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    indices = itertools.count()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    result = LoadResult(generated=len(requests))
    began = time.perf_counter()
    measure_from = began + spec.warmup
    stop_at = measure_from + spec.seconds

    async def connect() -> harness.RawConnection:
        return await harness.RawConnection.open(host, port)

    async def worker() -> None:
        connection = await connect()
        while True:
            start = time.perf_counter()
            if start >= stop_at:
                break
            index = next(indices)
            if index >= len(requests):
                if not spec.cycle:
                    result.exhausted = True
                    break
                index %= len(requests)
            try:
                status = await connection.request(requests[index])
            except (ConnectionError, OSError, ValueError):
                result.errors += 1
                if connection.transport is not None:
                    connection.transport.close()
                connection = await connect()
                continue
            done = time.perf_counter()
            key = str(status)
            statuses[key] = statuses.get(key, 0) + 1
            if start >= measure_from:
                latencies.append(done - start)
        if connection.transport is not None:
            connection.transport.close()

    cpu_before = time.process_time()
    server_before = harness.cpu_seconds(spec.server_pid)
    await asyncio.gather(*(worker() for _ in range(spec.connections)))
    ended = time.perf_counter()
    result.client_cpu = (time.process_time() - cpu_before) / (ended - began)
    result.server_cpu = (harness.cpu_seconds(spec.server_pid) - server_before) / (ended - began)
    latencies.sort()
    result.requests = len(latencies)
    result.elapsed_s = min(ended, stop_at) - measure_from
    result.rps = result.requests / result.elapsed_s if result.elapsed_s > 0 else 0.0
    result.p50_ms = harness.percentile(latencies, 0.50) * 1000
    result.p99_ms = harness.percentile(latencies, 0.99) * 1000
    result.max_ms = (latencies[-1] if latencies else float("nan")) * 1000
    result.statuses = statuses
    return result


def run_load(spec_json: str) -> None:
    """Load generator process: prints one JSON LoadResult on stdout."""
    spec = LoadSpec(**json.loads(spec_json))
    requests = build_requests(spec)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    result = asyncio.run(_drive(spec, requests))
    print(json.dumps(asdict(result)))


def load(spec: LoadSpec) -> LoadResult:
    """Run the load generator in its own process (killed if this one is interrupted)."""
    import subprocess

    argv = [harness.PYTHON, os.path.abspath(__file__), "--load", json.dumps(asdict(spec))]
    completed = subprocess.run(
        argv,
        check=True,
        capture_output=True,
        cwd=harness.ROOT,
        timeout=spec.seconds + spec.warmup + 120,
    )
    return LoadResult(**json.loads(completed.stdout))


# ---------------------------------------------------------------- orchestration


def format_row(number: int, name: str, result: LoadResult) -> str:
    return (
        f"{number:<6} {name:<10} {result.rps:>9.0f} {result.p50_ms:>8.2f} {result.p99_ms:>8.2f} "
        f"{result.max_ms:>8.1f} {result.requests:>9} {result.errors:>6} "
        f"{result.client_cpu * 100:>9.0f}% {result.server_cpu * 100:>9.0f}%  "
        f"{json.dumps(result.statuses, sort_keys=True)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--max-rate",
        type=int,
        default=16000,
        help="requests pre-generated per second of run (callwatch stops if used up)",
    )
    parser.add_argument("--postgres", default=harness.DEFAULT_PG)
    parser.add_argument("--redis", default=harness.DEFAULT_REDIS)
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--load", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server is not None:
        run_bare_server(args.bare_server)
        return 0
    if args.load is not None:
        run_load(args.load)
        return 0

    return harness.run_main(bench, args)


def bench(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    def spec(url: str, secret: str, server_pid: int, *, cycle: bool = False) -> LoadSpec:
        return LoadSpec(
            url=url,
            secret=secret,
            seconds=args.seconds,
            warmup=args.warmup,
            connections=args.connections,
            max_rate=args.max_rate,
            server_pid=server_pid,
            cycle=cycle,
        )

    print(
        f"receiver benchmark: {args.rounds} rounds of bare then callwatch, {args.connections} "
        f"connections, {args.warmup:g} s warm-up + {args.seconds:g} s measured each, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    print(
        f"{'round':<6} {'server':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'measured':>9} {'errors':>6} {'clientCPU':>10} {'serverCPU':>10}"
        "  statuses (all)",
        flush=True,
    )
    rounds: list[tuple[LoadResult, LoadResult]] = []
    harness.flush_redis(args.redis)
    bare_port, port = harness.free_port(), harness.free_port()
    bare_url = f"http://127.0.0.1:{bare_port}"
    base = f"http://127.0.0.1:{port}"
    bare_argv = [harness.PYTHON, os.path.abspath(__file__), "--bare-server", str(bare_port)]
    with (
        harness.child(bare_argv) as bare_server,
        harness.temp_database(args.postgres, "bench_receiver") as database_url,
    ):
        env = harness.callwatch_env(database_url, args.redis, base)
        with harness.serve(env, port) as server:
            harness.wait_http(bare_url + "/", bare_server)
            harness.wait_http(base + "/healthz", server)
            webhook_url, secret = harness.create_source(base)
            # Alternating rounds: the machine's speed drifts by tens of percent within minutes,
            # so each callwatch round is compared with the bare round just before it.
            bare_spec = spec(f"{bare_url}/webhooks/bare", BARE_SECRET, bare_server.pid, cycle=True)
            for number in range(1, args.rounds + 1):
                bare = load(bare_spec)
                print(format_row(number, "bare", bare), flush=True)
                ours = load(spec(webhook_url, secret, server.pid))
                print(format_row(number, "callwatch", ours), flush=True)
                rounds.append((bare, ours))
        with harness.engine_for(database_url) as engine, engine.connect() as connection:
            inbox_rows = connection.execute(text("SELECT count(*) FROM inbox")).scalar_one()
    harness.flush_redis(args.redis)

    ratios = [ours.rps / bare.rps if bare.rps else 0.0 for bare, ours in rounds]
    ratio = statistics.median(ratios)
    p99 = statistics.median(ours.p99_ms for _, ours in rounds)
    print()
    print(
        f"ratio callwatch/bare per round: {', '.join(f'{r:.3f}' for r in ratios)}; median "
        f"{ratio:.3f}   goal >= {GOAL_RATIO}: {'MET' if ratio >= GOAL_RATIO else 'MISSED'}"
    )
    print(
        f"callwatch p99 median: {p99:.2f} ms   goal < {GOAL_P99_MS:g} ms: "
        f"{'MET' if p99 < GOAL_P99_MS else 'MISSED'}"
    )
    if any(ours.exhausted for _, ours in rounds):
        print("WARNING: callwatch used up the pre-generated requests; raise --max-rate")

    statuses: Counter[str] = Counter()
    for _, ours in rounds:
        statuses.update(ours.statuses)
    errors = sum(ours.errors for _, ours in rounds)
    accepted = statuses["202"]
    others = sum(statuses.values()) - accepted
    balanced = inbox_rows == accepted and others == 0 and errors == 0
    print(
        f"durability ledger: 202 replies {accepted}, other replies {others}, connection errors "
        f"{errors}, inbox rows {inbox_rows} -> {'OK' if balanced else 'MISMATCH'}"
    )
    return 0 if balanced else 1


if __name__ == "__main__":
    sys.exit(main())
