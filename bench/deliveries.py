"""Subscriber deliveries: assembled calls → signed `call.assembled` webhooks → a local receiver.

Usage (from the repository root):

    uv run python bench/deliveries.py [--calls 10000] [--rate 50] [--producers 4]
        [--workers 2] [--worker-threads 12] [--baseline-requests 3000] [--timeout 300]
        [--seed 1] [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--redis redis://127.0.0.1:6379/10]

What it does:

1. A fresh Postgres database (created, migrated, dropped at the end), the Redis db flushed,
   `python -m callwatch serve` and `--workers` `python -m callwatch worker` processes
   (`--worker-threads` threads each; production starts once each answers a ping) with
   CALLWATCH_ALLOW_PRIVATE_TARGETS=true, and a receiver:
   a Starlette app under uvicorn in its own process on loopback that answers 200 at once and
   records each `webhook-id` with the time it first arrived (and counts repeats).
2. Through the public API: an org, a generic source, and ONE subscription
   `{url: <receiver>/hook, event_types: ["call.assembled"]}`.
3. Baseline, in the same run: the receiver's `/raw` route (answers 200, records nothing) hit
   directly by a plain httpx loop with a payload of the same size, sequentially and from as
   many threads as the workers have, for `--baseline-requests` requests each.
4. `--calls` assembled calls, made by the same code the worker runs when it finishes an
   assembly: one transaction stores the assembled call (a realistic record from
   `callwatch.simulator.make_call`, transcript included) and runs `downstream.assembled`
   (fan-out to the subscription, alert rules), then `workers.tasks.dispatch` enqueues the
   `deliver` task and adds the `callwatch:calls` stream entry. `--producers` threads do this.
   Paced (`--rate` > 0, default 50/s, about half of what this 2-core machine delivers): call n
   no earlier than n / `--rate` seconds in, dispatched right after its commit; this measures
   latency at a load the workers sustain. `--rate 0`: every call is assembled first with its
   dispatch held back, then all are dispatched at once, so the workers drain a full queue;
   this measures their capacity (latency is then mostly time in the queue).
5. Waits until no delivery is pending (or `--timeout`), then reports: deliveries per second
   (paced: first assembly -> last receipt; draining: first -> last receipt), latency from
   assembly (`deliveries.created_at`, the assembly transaction's time) to first receipt at the
   receiver (same machine clock), p50 / p95 / max, worker CPU per delivery, and the ledger:
   assembled = delivered + failed with none pending, and the receiver saw every delivered
   `webhook-id` (repeats counted apart), with the attempts by outcome (a retry or an
   interrupted attempt shows there). A ledger that does not balance makes the run VOID.

Internal mode (used by the script itself): `--receiver PORT`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness
import httpx
from pydantic import SecretStr
from sqlalchemy import Engine, text

# ---------------------------------------------------------------- receiver (its own process)


def run_receiver(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    first: dict[str, float] = {}
    seen = {"requests": 0}

    async def hook(request: Request) -> Response:
        at = time.time()
        await request.body()
        seen["requests"] += 1
        first.setdefault(request.headers.get("webhook-id", ""), at)
        return Response(status_code=200)

    async def raw(request: Request) -> Response:
        await request.body()
        return Response(status_code=200)

    async def records(request: Request) -> JSONResponse:
        return JSONResponse({"requests": seen["requests"], "first": first})

    app = Starlette(
        routes=[
            Route("/hook", hook, methods=["POST"]),
            Route("/raw", raw, methods=["POST"]),
            Route("/records", records, methods=["GET"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---------------------------------------------------------------- baseline


def baseline(url: str, body: bytes, requests: int, threads: int) -> float:
    """POSTs per second of plain httpx clients (one per thread, keep-alive) to `url`."""
    headers = {
        "content-type": "application/json",
        "webhook-id": "msg_baseline",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1,baseline",
    }
    per_thread = max(1, requests // threads)

    def loop(_: int) -> None:
        with httpx.Client(timeout=10.0) as client:
            for _ in range(per_thread):
                client.post(url, content=body, headers=headers).raise_for_status()

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(loop, range(threads)))
    return per_thread * threads / (time.perf_counter() - began)


# ---------------------------------------------------------------- producing assembled calls


@dataclass(frozen=True)
class Tenant:
    org_id: str
    source_id: str
    source_name: str


def records(tenant: Tenant, count: int, seed: int) -> list[Any]:
    """Realistic assembled records, built up front so producing one costs only its storing."""
    from callwatch.calls import assembly
    from callwatch.calls.fold import CallState
    from callwatch.model import call_metrics
    from callwatch.model.records import Assembly
    from callwatch.simulator import make_call

    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for index in range(count):
        sim = make_call(rng, now)
        state = CallState(
            status=sim.status,
            started_at=sim.started_at,
            initiated_at=sim.started_at,
            ringing_at=sim.ringing_at,
            answered_at=sim.answered_at,
            ended_at=sim.ended_at,
            terminal=True,
        )
        merged = assembly.merge(state, sim.detail)
        out.append(
            assembly.build(
                call_id=f"call_bench_{index:06d}",
                org_id=tenant.org_id,
                source=tenant.source_name,
                provider="generic",
                provider_call_id=sim.call_id,
                state=state,
                details=merged,
                recording=assembly.recording_of(merged, now),
                metrics=call_metrics.compute(merged, ringing_at=sim.ringing_at),
                assembly=Assembly(state="assembled", attempts=1, assembled_at=now),
                updated_at=now,
            )
        )
    return out


def assemble_one(rt: Any, tenant: Tenant, record: Any, dispatch: Callable[[Any], None]) -> None:
    """What the worker does when an assembly completes: store, fan out, commit, dispatch."""
    from callwatch.calls import store as calls
    from callwatch.db import transaction
    from callwatch.model.records import Assembly
    from callwatch.pipeline import fanout
    from callwatch.tables import Call

    with transaction(rt.sessions) as session:
        now = rt.clock()
        record = record.model_copy(
            update={
                "assembly": Assembly(state="assembled", attempts=1, assembled_at=now),
                "updated_at": now,
            }
        )
        call = Call(
            id=record.id,
            org_id=tenant.org_id,
            source_id=tenant.source_id,
            provider=record.provider,
            provider_call_id=record.provider_call_id,
            started_at=record.created_at or now,
            ended_at=record.ended_at,
            fields={},
            record=record.model_dump(mode="json"),
            assembly_state="assembled",
            assembly_attempts=1,
            assembly_failures=0,
            assembled_at=now,
            created_at=now,
            updated_at=now,
        )
        calls.copy_columns(call, record)
        session.add(call)
        session.flush()
        effects = fanout.assembled(session, call, record, now)
    dispatch(effects)


def produce(
    rt: Any, tenant: Tenant, built: list[Any], producers: int, rate: float
) -> tuple[float, int]:
    """Every call assembled by `producers` threads; (seconds taken, errors).

    Paced (`rate` > 0): call n at n / `rate` s, each dispatched after its commit, as the worker
    does. Unpaced: all assembled first with their dispatch held back, then dispatched in one
    go, so the workers drain a full queue (their capacity, not the producers')."""
    from workers.tasks import dispatch

    held: list[Any] = []
    began = time.perf_counter()
    errors = assemble_all(rt, tenant, built, producers, rate, dispatch if rate > 0 else held.append)
    if held:
        assembled = time.perf_counter()
        for effects in held:
            dispatch(effects)
        print(
            f"assembled {len(built)} calls in {assembled - began:.2f} s, then dispatched them "
            f"in {time.perf_counter() - assembled:.2f} s",
            flush=True,
        )
    return time.perf_counter() - began, errors


def assemble_all(
    rt: Any,
    tenant: Tenant,
    built: list[Any],
    producers: int,
    rate: float,
    dispatch: Callable[[Any], None],
) -> int:
    indices = itertools.count()
    errors = [0]
    lock = threading.Lock()
    began = time.perf_counter()

    def worker() -> None:
        while (index := next(indices)) < len(built):
            if rate > 0:
                time.sleep(max(0.0, began + index / rate - time.perf_counter()))
            try:
                assemble_one(rt, tenant, built[index], dispatch)
            except Exception as exc:
                with lock:
                    errors[0] += 1
                    if errors[0] <= 3:
                        print(f"producer error: {exc!r}", file=sys.stderr)

    threads = [threading.Thread(target=worker) for _ in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors[0]


# ---------------------------------------------------------------- measuring


def delivery_states(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT state, count(*) FROM deliveries GROUP BY state"))
        return {state: count for state, count in rows}


def wait_settled(engine: Engine, expected: int, timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    states: dict[str, int] = {}
    while time.monotonic() < deadline:
        states = delivery_states(engine)
        if sum(states.values()) >= expected and not states.get("pending"):
            break
        time.sleep(0.2)
    return states


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="assembled calls per second (0: drain a full queue)",
    )
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-threads", type=int, default=12)
    parser.add_argument("--baseline-requests", type=int, default=3000)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", default=harness.DEFAULT_PG)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/10")
    args = parser.parse_args()
    if args.receiver is not None:
        run_receiver(args.receiver)
        return 0
    return harness.run_main(bench, args)


def bench(args: argparse.Namespace) -> int:
    offered = f"{args.rate:g}/s" if args.rate else "full speed, dispatched at once"
    print(
        f"delivery benchmark: {args.calls} assembled calls offered at {offered} by "
        f"{args.producers} producers, {args.workers} workers x {args.worker_threads} threads, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    harness.flush_redis(args.redis)
    with harness.temp_database(args.postgres, "bench_deliveries") as database_url:
        port, receiver_port = harness.free_port(), harness.free_port()
        base = f"http://127.0.0.1:{port}"
        receiver = f"http://127.0.0.1:{receiver_port}"
        env = harness.callwatch_env(database_url, args.redis, base)
        env["CALLWATCH_ALLOW_PRIVATE_TARGETS"] = "true"
        hostnames = [f"bench-{n}-{os.getpid()}@{socket.gethostname()}" for n in range(args.workers)]
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
        receiver_argv = [harness.PYTHON, __file__, "--receiver", str(receiver_port)]
        with (
            harness.child(receiver_argv) as receiver_process,
            harness.serve(env, port) as server,
            harness.engine_for(database_url) as engine,
        ):
            harness.wait_http(base + "/healthz", server)
            harness.wait_http(receiver + "/records", receiver_process)
            tenant = setup(base, receiver)
            built = records(tenant, args.calls, args.seed)
            body = sample_body(built[0])
            threads = args.workers * args.worker_threads
            sequential = baseline(receiver + "/raw", body, args.baseline_requests, 1)
            parallel = baseline(receiver + "/raw", body, args.baseline_requests, threads)
            rt = producer_runtime(database_url, args.redis)
            try:
                with contextlib.ExitStack() as stack:
                    processes = [stack.enter_context(harness.child(argv, env)) for argv in workers]
                    # Measured from when both workers consume: a worker's start-up (imports, its
                    # first connections) takes seconds, more on a loaded host, and deliveries
                    # made before it would wait behind it (the paced tail, until 2026-12-08).
                    ready_s = harness.wait_workers(args.redis, hostnames)
                    print(f"workers ready after {ready_s:.1f} s", flush=True)
                    cpu_before = sum(harness.cpu_seconds(p.pid) for p in processes)
                    took, errors = produce(rt, tenant, built, args.producers, args.rate)
                    states = wait_settled(engine, args.calls, args.timeout)
                    cpu = sum(harness.cpu_seconds(p.pid) for p in processes) - cpu_before
            finally:
                rt.close()
            seen = httpx.get(receiver + "/records", timeout=30).json()
            with engine.connect() as connection:
                rows = connection.execute(
                    text("SELECT id, state, created_at FROM deliveries")
                ).all()
                assembled = connection.execute(
                    text("SELECT count(*) FROM calls WHERE assembly_state = 'assembled'")
                ).scalar_one()
                outcomes = dict(
                    connection.execute(
                        text("SELECT outcome, count(*) FROM delivery_attempts GROUP BY outcome")
                    ).all()
                )
    harness.flush_redis(args.redis)
    result = Result(
        calls=args.calls,
        assembled=assembled,
        produce_s=took,
        producer_errors=errors,
        states=states,
        rows=rows,
        attempts=outcomes,
        seen=seen,
        worker_cpu_s=cpu,
        sequential_rps=sequential,
        parallel_rps=parallel,
        threads=threads,
        body_bytes=len(body),
        paced=args.rate > 0,
    )
    return report(result)


def setup(base: str, receiver: str) -> Tenant:
    """An org, a generic source and one `call.assembled` subscription, through the API."""
    admin = {"authorization": f"Bearer {harness.ADMIN_TOKEN}"}
    with httpx.Client(base_url=base, timeout=10.0) as client:
        org = client.post("/api/admin/orgs", json={"name": "bench"}, headers=admin)
        org.raise_for_status()
        headers = {"authorization": f"Bearer {org.json()['api_key']}"}
        source = client.post(
            "/api/sources", json={"name": "bench", "provider": "generic"}, headers=headers
        )
        source.raise_for_status()
        subscription = client.post(
            "/api/subscriptions",
            json={"url": receiver + "/hook", "event_types": ["call.assembled"]},
            headers=headers,
        )
        if subscription.status_code != 201:
            raise RuntimeError(f"subscription not created: {subscription.text}")
    return Tenant(org.json()["id"], source.json()["id"], "bench")


def producer_runtime(database_url: str, redis_url: str) -> Any:
    """This process as a worker would be after an assembly: its runtime and Celery producer."""
    from callwatch.runtime import Runtime
    from callwatch.settings import Settings
    from workers.app import app, configure

    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key=SecretStr(harness.SECRET_KEY),
        admin_token=SecretStr(harness.ADMIN_TOKEN),
        allow_private_targets=True,
        log_level="WARNING",
    )
    configure(app, settings)
    app.runtime = Runtime.start(settings)
    return app.runtime


def sample_body(record: Any) -> bytes:
    """A `call.assembled` payload as subscribers get it, for the baseline's requests."""
    from callwatch.downstream import deliveries

    data = {"call_id": record.id, "record": record.model_dump(mode="json")}
    event = deliveries.payload("call.assembled", data, datetime.now(UTC))
    return json.dumps(event, separators=(",", ":")).encode()


# ---------------------------------------------------------------- report


@dataclass
class Result:
    calls: int
    assembled: int
    produce_s: float
    producer_errors: int
    states: dict[str, int]
    rows: list[Any]
    attempts: dict[str, int]  # attempts by outcome
    seen: dict[str, Any]
    worker_cpu_s: float
    sequential_rps: float
    parallel_rps: float
    threads: int
    body_bytes: int
    paced: bool


def report(result: Result) -> int:
    first: dict[str, float] = result.seen["first"]
    latencies: list[float] = []
    created_first: datetime | None = None
    for delivery_id, state, created_at in result.rows:
        created_first = min(created_first or created_at, created_at)
        if state == "delivered" and delivery_id in first:
            latencies.append(first[delivery_id] - created_at.timestamp())
    latencies.sort()
    delivered = result.states.get("delivered", 0)
    failed = result.states.get("failed", 0)
    pending = result.states.get("pending", 0)
    # Paced: from the first assembly, as a user sees it. Draining a full queue: from the first
    # receipt, so the workers' capacity is what is measured.
    start = (
        created_first.timestamp()
        if result.paced and created_first
        else min(first.values(), default=0.0)
    )
    window = max(first.values(), default=start) - start
    rate = delivered / window if window > 0 else 0.0
    missing_at_receiver = sum(
        1
        for delivery_id, state, _ in result.rows
        if state == "delivered" and delivery_id not in first
    )
    repeats = result.seen["requests"] - len(first)
    p50, p95 = harness.percentile(latencies, 0.50), harness.percentile(latencies, 0.95)
    worst = latencies[-1] if latencies else float("nan")
    print()
    print(
        f"baseline (plain httpx, same receiver, {result.body_bytes} B body): "
        f"{result.sequential_rps:.0f} POST/s from 1 thread, {result.parallel_rps:.0f} POST/s "
        f"from {result.threads} threads"
    )
    how = "dispatched as they committed" if result.paced else "then dispatched all at once"
    print(
        f"produced: {result.calls} assembled calls in {result.produce_s:.2f} s "
        f"({result.calls / result.produce_s:.0f}/s, {how}), "
        f"producer errors: {result.producer_errors}"
    )
    print(f"deliveries by state: {dict(sorted(result.states.items()))}")
    raw = max(result.sequential_rps, result.parallel_rps)
    span = "first assembly" if result.paced else "first receipt"
    print(
        f"throughput: {rate:.1f} deliveries/s ({span} -> last receipt: {window:.2f} s), "
        f"{rate / raw:.1%} of the baseline's best {raw:.0f} raw POST/s"
    )
    print(
        f"latency assembly -> receipt: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {worst * 1000:.0f} ms (n={len(latencies)})"
        + ("" if result.paced else " -- mostly time in the queue: pace with --rate to measure it")
    )
    per_delivery = result.worker_cpu_s / delivered * 1000 if delivered else float("nan")
    print(f"worker CPU: {result.worker_cpu_s:.1f} s, {per_delivery:.2f} ms per delivery")
    balanced = (
        result.assembled == result.calls == delivered + failed
        and pending == 0
        and missing_at_receiver == 0
    )
    print(f"attempts by outcome: {dict(sorted(result.attempts.items()))}")
    print(
        f"ledger: assembled {result.assembled} = delivered {delivered} + failed {failed} "
        f"(pending {pending}); delivered but never received: {missing_at_receiver}; "
        f"repeats at the receiver (same webhook-id): {repeats} -> "
        f"{'OK' if balanced else 'VOID'}"
    )
    return 0 if balanced else 1


if __name__ == "__main__":
    sys.exit(main())
