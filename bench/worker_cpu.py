"""A worker's CPU per call: the ingest task run in-process over stored webhooks, no Celery loop.

Usage (from the repository root):

    uv run python bench/worker_cpu.py [--calls 600] [--batch 9] [--profile 0]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/5]

`bench/pipeline.py` measures the whole pipeline, where the workers share two cores with the web
process, Postgres and the load client, and one run's CPU per call differs from the next
by a fifth. This one isolates the work of `workers.tasks.ingest`, which applies the events and
assembles the calls they complete:

1. A fresh Postgres database and `python -m callwatch serve` (no workers), the simulator's
   detail API in a process of its own (recordings available at once), a generic source, and
   `--calls` simulated calls' webhooks posted to it (`bench/pipeline.py`'s client, unpaced).
   The inbox then holds every event, unprocessed. The server is stopped.
2. The inbox ids, in the order stored, in messages of `--batch` ids (intake's queue message
   holds the ids stored in ≤ 50 ms: ~23 at 125 calls/s), each passed to the task's function in this
   process's main thread, as a Celery worker thread would run it.
3. Prints this process's CPU per call (the detail fetches included, as in a worker), SQL
   statements per call, and the ledger: every call assembled, or VOID.
   `--profile N` also prints the N functions with the most cumulative CPU time (cProfile)
   and the SQL statements per call by their first words.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness
from pipeline import send_all
from sqlalchemy import event, text

from callwatch.simulator import DetailServer, SimCall, make_call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--batch", type=int, default=9)
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", default=harness.DEFAULT_PG)
    parser.add_argument("--redis", default=harness.DEFAULT_REDIS)
    parser.add_argument("--details", help=argparse.SUPPRESS)  # internal: the detail API process
    args = parser.parse_args()
    if args.details:
        serve_details(**json.loads(args.details))
        return 0
    return harness.run_main(bench, args)


def simulated_calls(seed: int, count: int, now: float, recording_base: str) -> list[SimCall]:
    rng = random.Random(seed)
    at = datetime.fromtimestamp(now, UTC)
    return [make_call(rng, at, recording_base=recording_base) for _ in range(count)]


def serve_details(seed: int, count: int, now: float) -> None:
    """The detail API process: prints its URL, serves the calls until stdin closes."""
    with DetailServer() as details:
        for call in simulated_calls(seed, count, now, details.url):
            details.add(call, recording_after_s=0)
        print(details.url, flush=True)
        sys.stdin.read()


@contextlib.contextmanager
def details_process(seed: int, count: int, now: float) -> Iterator[str]:
    """The simulator's detail API in its own process, so that its CPU is not this process's."""
    spec = json.dumps({"seed": seed, "count": count, "now": now})
    process = subprocess.Popen(
        [harness.PYTHON, os.path.abspath(__file__), "--details", spec],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().decode().strip()
    finally:
        harness.stop_child(process)


def bench(args: argparse.Namespace) -> int:
    print(f"worker CPU benchmark: {args.calls} calls, {args.batch} event ids per message")
    harness.flush_redis(args.redis)
    now = time.time()
    with (
        harness.temp_database(args.postgres, "bench_worker") as database_url,
        details_process(args.seed, args.calls, now) as details_url,
    ):
        port = harness.free_port()
        base = f"http://127.0.0.1:{port}"
        env = harness.callwatch_env(database_url, args.redis, base)
        with harness.serve(env, port) as server:
            harness.wait_http(base + "/healthz", server)
            detail_url = details_url + "/calls/{call_id}"
            webhook_url, secret = harness.create_source(base, {"detail_url": detail_url})
            calls = simulated_calls(args.seed, args.calls, now, details_url)
            sent = asyncio.run(send_all(webhook_url, secret, calls, 32, 0))
        print(f"webhooks: {sent.requests} sent, 202: {sent.accepted}", flush=True)
        os.environ.update(env)
        return run_tasks(args)


def run_tasks(args: argparse.Namespace) -> int:
    # Imported only now: the Celery app reads its settings from the environment at import.
    from callwatch.runtime import Runtime
    from workers import tasks
    from workers.app import app

    app.runtime = runtime = Runtime.start(app.settings)
    statements: Counter[str] = Counter()

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements[" ".join(statement.split()[:4])] += 1

    event.listen(runtime.engine, "before_cursor_execute", count)
    with runtime.engine.connect() as connection:
        ids = list(connection.scalars(text("SELECT id FROM inbox ORDER BY id")))
    messages = [ids[n : n + args.batch] for n in range(0, len(ids), args.batch)]
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    began_cpu, began = time.thread_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    for message in messages:
        tasks.ingest(message)
    if profiler is not None:
        profiler.disable()
    cpu_s, wall_s = time.thread_time() - began_cpu, time.perf_counter() - began
    with runtime.engine.connect() as connection:
        states = dict(
            connection.execute(
                text("SELECT assembly_state, count(*) FROM calls GROUP BY assembly_state")
            ).all()
        )
    runtime.close()
    runtime.engine.dispose()
    app.runtime = None
    harness.flush_redis(args.redis)
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)
        for kind, n in statements.most_common():
            print(f"{n / args.calls:6.2f} per call  {kind}")
    print(
        f"{len(messages)} messages: CPU {cpu_s * 1000 / args.calls:.2f} ms per call "
        f"(wall {wall_s * 1000 / args.calls:.2f} ms), "
        f"{statements.total() / args.calls:.1f} SQL statements per call"
    )
    assembled = states.get("assembled", 0)
    print(
        f"ledger: {args.calls} calls = {assembled} assembled (by state: {states})"
        f" -> {'OK' if assembled == args.calls else 'VOID'}"
    )
    return 0 if assembled == args.calls else 1


if __name__ == "__main__":
    sys.exit(main())
