"""End-to-end pipeline: webhooks in → inbox → Celery (2 workers) → detail fetch → assembled record.

Usage (from the repository root):

    uv run python bench/pipeline.py [--calls 3000] [--rate 125] [--concurrency 64]
        [--worker-threads 12] [--timeout 120] [--seed 1]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--redis redis://127.0.0.1:6379/5]

What it does:

1. A fresh Postgres database (created, migrated, dropped at the end), Redis db 5 flushed,
   `python -m callwatch serve` plus TWO `python -m callwatch worker` processes (distinct
   --hostname, `--worker-threads` threads each), all stopped on exit (also on Ctrl-C).
2. A `callwatch.simulator.DetailServer` in this process; every call is registered with its
   recording available at once (recording_after_s=0). A generic source whose
   settings.detail_url is the server's template.
3. `--calls` simulated calls (`make_call`), each posting its `events_for(..., embed_detail=False)`
   in order over a raw keep-alive HTTP/1.1 client (httpx cost ~4 ms of CPU per request here and
   was the bottleneck), call n starting at n / `--rate` seconds: latency is measured at an offered
   load the pipeline should sustain. `--rate 0` offers calls as fast as the server answers,
   which measures capacity (the queue then grows, so latency means nothing in that mode). The
   default offers 25 % more than the goal, so a run that keeps up shows headroom.
4. Polls the database until every call is assembled or failed (or `--timeout`), then measures
   per call: completion event's `inbox.received_at` → `calls.assembled_at` (both the server's
   clock). Throughput: assembled calls / (first completion received → last assembled). Also the
   p95 of each fifth of the calls by completion time, which tells a stall from falling behind.
5. Ledger: sent = assembled + failed + missing-recording (assembled without its recording);
   anything else (unfinished, never stored) makes the run VOID.

Goal: >= 100 calls/s and p95 < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness
from sqlalchemy import Engine, text

from callwatch.simulator import DetailServer, SimCall, events_for, make_call, signed_request

GOAL_RATE = 100.0
GOAL_P95_S = 1.0


@dataclass
class SendStats:
    requests: int = 0
    accepted: int = 0
    rejected: Counter[int] | None = None
    errors: int = 0
    retried: int = 0
    elapsed_s: float = 0.0


async def send_all(
    url: str, secret: str, calls: list[SimCall], concurrency: int, rate: float, retries: int = 0
) -> SendStats:
    """Each of `concurrency` players posts one call's events in order, then takes the next call;
    call n starts no earlier than n / `rate` seconds in (0: as fast as the server answers).
    A 503 or 429 is sent again up to `retries` times, a second apart, as a platform would."""
    stats = SendStats(rejected=Counter())
    queue: asyncio.Queue[tuple[int, SimCall]] = asyncio.Queue()
    for index, call in enumerate(calls):
        queue.put_nowait((index, call))
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    began = time.perf_counter()

    async def player() -> None:
        connection = await harness.RawConnection.open(host, port)
        while not queue.empty():
            index, call = queue.get_nowait()
            if rate > 0:
                await asyncio.sleep(began + index / rate - time.perf_counter())
            for body in events_for(call, embed_detail=False):
                content, headers = signed_request(secret, body, time.time())
                for attempt in range(retries + 1):
                    stats.requests += 1
                    try:
                        request = harness.raw_request(url, content, headers)
                        status = await connection.request(request)
                    except (ConnectionError, OSError, ValueError):
                        stats.errors += 1
                        connection = await harness.RawConnection.open(host, port)
                        status = None
                        break
                    if status not in (429, 503) or attempt == retries:
                        break
                    stats.retried += 1
                    await asyncio.sleep(1.0)
                if status is None:
                    continue
                if status == 202:
                    stats.accepted += 1
                else:
                    assert stats.rejected is not None
                    stats.rejected[status] += 1
        if connection.transport is not None:
            connection.transport.close()

    await asyncio.gather(*(player() for _ in range(concurrency)))
    stats.elapsed_s = time.perf_counter() - began
    return stats


def worker_cpu_s(*pids: int) -> float:
    everyone = [*pids, *(child for pid in pids for child in harness.descendants(pid))]
    return sum(harness.cpu_seconds(pid) for pid in everyone)


def wait_settled(engine: Engine, expected: int, timeout_s: float) -> dict[str, int]:
    """Poll until every expected call is assembled or failed; returns counts by state."""
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT assembly_state, count(*) FROM calls GROUP BY assembly_state")
            ).all()
        counts = {state: n for state, n in rows}
        if counts.get("assembled", 0) + counts.get("failed", 0) >= expected:
            return counts
        time.sleep(0.1)
    return counts


RESULTS_SQL = text("""
    SELECT c.provider_call_id, c.assembly_state, c.assembled_at,
           c.record -> 'recording' ->> 'status' AS recording,
           i.received_at AS completed_at
    FROM calls c
    LEFT JOIN inbox i ON i.source_id = c.source_id
                     AND i.provider_call_id = c.provider_call_id
                     AND i.event ->> 'type' = 'call.completed'
""")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--rate", type=float, default=125.0, help="calls started per second (0: unpaced)"
    )
    parser.add_argument("--worker-threads", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", default=harness.DEFAULT_PG)
    parser.add_argument("--redis", default=harness.DEFAULT_REDIS)
    args = parser.parse_args()
    return harness.run_main(bench, args)


def bench(args: argparse.Namespace) -> int:
    print(
        f"pipeline benchmark: {args.calls} calls offered at "
        f"{f'{args.rate:g}/s' if args.rate else 'full speed'}, up to {args.concurrency} in "
        "flight, 2 workers x "
        f"{args.worker_threads} threads, {os.cpu_count()} CPUs",
        flush=True,
    )
    harness.flush_redis(args.redis)
    with (
        harness.temp_database(args.postgres, "bench_pipeline") as database_url,
        DetailServer() as details,
    ):
        port = harness.free_port()
        base = f"http://127.0.0.1:{port}"
        env = harness.callwatch_env(database_url, args.redis, base)
        hostnames = [f"bench-{n}-{os.getpid()}@{socket.gethostname()}" for n in (1, 2)]
        workers = [
            [
                harness.PYTHON,
                "-m",
                "callwatch",
                "worker",
                "--concurrency",
                str(args.worker_threads),
                "--hostname",
                hostname,
            ]
            for hostname in hostnames
        ]
        with (
            harness.serve(env, port) as server,
            harness.child(workers[0], env) as worker_1,
            harness.child(workers[1], env) as worker_2,
            harness.engine_for(database_url) as engine,
        ):
            harness.wait_http(base + "/healthz", server)
            webhook_url, secret = harness.create_source(base, {"detail_url": details.detail_url})
            rng = random.Random(args.seed)
            calls = [
                make_call(rng, datetime.now(UTC), recording_base=details.url)
                for _ in range(args.calls)
            ]
            for call in calls:
                details.add(call, recording_after_s=0)
            # Measured from when both workers consume: a worker's start-up (imports, its first
            # connections) takes seconds, and calls sent before it would queue behind it.
            ready_s = harness.wait_workers(args.redis, hostnames)
            print(f"workers ready after {ready_s:.1f} s", flush=True)
            started = worker_cpu_s(worker_1.pid, worker_2.pid)
            sent = asyncio.run(send_all(webhook_url, secret, calls, args.concurrency, args.rate))
            counts = wait_settled(engine, args.calls, args.timeout)
            spent_s = worker_cpu_s(worker_1.pid, worker_2.pid) - started
            with engine.connect() as connection:
                rows = connection.execute(RESULTS_SQL).all()
    harness.flush_redis(args.redis)
    return report(args, sent, counts, rows, spent_s)


def report(
    args: argparse.Namespace,
    sent: SendStats,
    counts: dict[str, int],
    rows: list[object],
    worker_s: float,  # both workers' CPU seconds from the first webhook until all settled
) -> int:
    assembled = missing = failed = 0
    latencies: list[float] = []
    timed: list[tuple[datetime, float]] = []  # (completion received, latency)
    first_completion: datetime | None = None
    last_assembled: datetime | None = None
    for row in rows:
        _, state, assembled_at, recording, completed_at = row  # type: ignore[misc]
        if completed_at is not None:
            first_completion = min(first_completion or completed_at, completed_at)
        if state == "failed":
            failed += 1
        elif state == "assembled":
            if recording == "missing":
                missing += 1
            else:
                assembled += 1
            last_assembled = max(last_assembled or assembled_at, assembled_at)
            if completed_at is not None:
                latencies.append((assembled_at - completed_at).total_seconds())
                timed.append((completed_at, latencies[-1]))
    latencies.sort()
    window = (
        (last_assembled - first_completion).total_seconds()
        if first_completion and last_assembled
        else 0.0
    )
    rate = (assembled + missing) / window if window > 0 else 0.0
    p50 = harness.percentile(latencies, 0.50)
    p95 = harness.percentile(latencies, 0.95)
    worst = latencies[-1] if latencies else float("nan")
    print()
    print(
        f"webhooks: {sent.requests} sent in {sent.elapsed_s:.2f} s "
        f"({sent.requests / sent.elapsed_s:.0f} req/s), 202: {sent.accepted}, "
        f"rejected: {dict(sent.rejected or {})}, connection errors: {sent.errors}"
    )
    print(f"calls by assembly state: {dict(sorted(counts.items()))}")
    print(
        f"throughput: {rate:.1f} calls/s assembled (first completion received -> last "
        f"assembled: {window:.2f} s)"
    )
    print(
        f"latency completion received -> assembled: p50 {p50 * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {worst * 1000:.0f} ms (n={len(latencies)})"
    )
    print(f"p95 by fifth of the run (by completion): {by_fifth(timed)}")
    print(f"worker CPU: {worker_s * 1000 / args.calls:.1f} ms per call (both processes)")
    print(
        f"goal >= {GOAL_RATE:g} calls/s: {'MET' if rate >= GOAL_RATE else 'MISSED'}; "
        f"goal p95 < {GOAL_P95_S:g} s: {'MET' if p95 < GOAL_P95_S else 'MISSED'}"
    )
    balanced = args.calls == assembled + failed + missing
    unfinished = args.calls - assembled - failed - missing
    print(
        f"ledger: sent {args.calls} = assembled {assembled} + failed {failed} + "
        f"missing-recording {missing} (unfinished/absent {unfinished})"
        f" -> {'OK' if balanced else 'VOID'}"
    )
    return 0 if balanced else 1


def by_fifth(timed: list[tuple[datetime, float]]) -> str:
    """p95 latency of the calls completed in each fifth of the run: a transient or a stall shows
    as one or two high fifths, a pipeline that falls behind as rising ones."""
    timed.sort()
    fifths = [
        sorted(latency for _, latency in timed[n * len(timed) // 5 : (n + 1) * len(timed) // 5])
        for n in range(5)
    ]
    return " / ".join(f"{harness.percentile(part, 0.95) * 1000:.0f}" for part in fifths) + " ms"


if __name__ == "__main__":
    sys.exit(main())
