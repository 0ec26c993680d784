"""The retention purge at scale: calls purged per second, and the receiver's rate while it runs.

Usage (from the repository root):

    uv run python bench/purge.py [--calls 1000000] [--rounds 4] [--seconds 10]
        [--connections 32] [--reuse postgresql://…/purge_bench] [--keep]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/5]

What it does:

1. A Postgres database seeded by bench/seed.py (`--calls` calls of org "acme" over 90 days, 50,000
   of "globex"; `--reuse URL` takes one seeded before, `--keep` keeps the one made here), then
   acme's `retention_days` set to 1: nearly all its calls are past it.
2. `callwatch serve` on it (uvloop + httptools) with a fresh org and generic source, and the
   purge in a child process of its own: `retention.purge.run`, as the worker's task runs it, with
   the default batch and pause and no budget.
3. `--rounds` rounds, each a receiver load (bench/receiver.py's load generator: signed generic
   webhooks, `--connections` keep-alive connections) with the purge stopped (SIGSTOP), then one
   with it running (SIGCONT), so each "during" figure has a "without" measured just before it
   on the same machine. Prints each round's req/s and the during/without ratio (goal ≥ 0.80), and
   the calls the purge deleted per second while the receiver was loaded and, after the rounds,
   for `--alone` seconds on its own.
4. Ledgers: inbox rows of the load's org = 202 replies; acme's calls left + purged (the Redis
   counter the purge adds to) = acme's calls at the start.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import time
from collections.abc import Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness
import receiver as receiver_bench

GOAL_RATIO = 0.80
MAIN_ORG = "acme"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--alone", type=float, default=20.0, help="seconds of purge alone")
    parser.add_argument("--max-rate", type=int, default=8000)
    parser.add_argument("--reuse", metavar="URL", help="a database bench/seed.py seeded")
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    parser.add_argument("--postgres", default=harness.DEFAULT_PG)
    parser.add_argument("--redis", default=harness.DEFAULT_REDIS)
    parser.add_argument("--purge-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.purge_child:
        return purge_child()
    return harness.run_main(bench, args)


def purge_child() -> int:
    """The purge as the worker's task runs it, from the environment's settings, unbounded."""
    from callwatch.retention import purge
    from callwatch.runtime import Runtime
    from callwatch.settings import Settings

    runtime = Runtime.start(Settings(purge_budget_s=10**9))
    try:
        purge.run(runtime)
    finally:
        runtime.close()
    return 0


@contextlib.contextmanager
def seeded(args: argparse.Namespace) -> Iterator[str]:
    if args.reuse:
        yield args.reuse
        return
    import seed

    if args.keep:
        url = args.postgres.rsplit("/", 1)[0] + "/purge_bench"
        argv = ["--database-url", url, "--create", "--calls", str(args.calls)]
        sys.argv = [sys.argv[0], *argv]
        seed.main()
        yield url
        return
    with harness.temp_database(args.postgres, "bench_purge") as url:
        seed.seed(url, calls_count=args.calls)
        yield url


def acme(database_url: str) -> tuple[str, int]:
    """acme's id and calls, its retention set to a day."""
    from sqlalchemy import select, text

    from callwatch.orgs import data_settings
    from callwatch.runtime import utcnow
    from callwatch.tables import Org

    with harness.engine_for(database_url) as engine:
        from sqlalchemy.orm import Session

        with Session(engine) as session, session.begin():
            org_id = session.scalar(select(Org.id).where(Org.name == MAIN_ORG))
            assert org_id is not None, "not a database bench/seed.py seeded"
            change = data_settings.DataSettingsPatch(retention_days=1)
            data_settings.patch(session, org_id, change, utcnow())
            calls = session.execute(
                text("SELECT count(*) FROM calls WHERE org_id = :org"), {"org": org_id}
            ).scalar_one()
    return org_id, int(calls)


def purged_so_far(redis_url: str) -> int:
    import redis

    from callwatch.retention.counters import PURGED
    from callwatch.runtime import COUNTERS

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.hget(COUNTERS, PURGED + "calls") or 0)
    finally:
        client.close()


def bench(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    print(f"purge benchmark: {os.cpu_count()} CPUs, {args.rounds} rounds", flush=True)
    harness.flush_redis(args.redis)
    port = harness.free_port()
    base = f"http://127.0.0.1:{port}"
    with seeded(args) as database_url:
        org_id, calls_before = acme(database_url)
        print(f"{MAIN_ORG}: {calls_before:,} calls, retention 1 day", flush=True)
        env = harness.callwatch_env(database_url, args.redis, base)
        with harness.serve(env, port) as server:
            harness.wait_http(base + "/healthz", server)
            webhook_url, secret = harness.create_source(base, name="load")
            spec = receiver_bench.LoadSpec(
                url=webhook_url,
                secret=secret,
                seconds=args.seconds,
                warmup=args.warmup,
                connections=args.connections,
                max_rate=args.max_rate,
                server_pid=server.pid,
                cycle=False,
            )
            purge_argv = [harness.PYTHON, os.path.abspath(__file__), "--purge-child"]
            pairs: list[tuple[float, float]] = []
            loaded_calls, loaded_s, accepted, unavailable, refused = 0, 0.0, 0, 0, 0
            with harness.child(purge_argv, env) as purger:
                for number in range(1, args.rounds + 1):
                    os.killpg(purger.pid, signal.SIGSTOP)
                    without = receiver_bench.load(spec)
                    print(receiver_bench.format_row(number, "no purge", without), flush=True)
                    os.killpg(purger.pid, signal.SIGCONT)
                    before, began = purged_so_far(args.redis), time.monotonic()
                    during = receiver_bench.load(spec)
                    loaded_calls += purged_so_far(args.redis) - before
                    loaded_s += time.monotonic() - began
                    print(receiver_bench.format_row(number, "purging", during), flush=True)
                    pairs.append((without.rps, during.rps))
                    for result in (without, during):
                        ok, busy = result.statuses.get("202", 0), result.statuses.get("503", 0)
                        accepted, unavailable = accepted + ok, unavailable + busy
                        refused += sum(result.statuses.values()) + result.errors - ok - busy
                before, began = purged_so_far(args.redis), time.monotonic()
                time.sleep(args.alone)
                alone_calls = purged_so_far(args.redis) - before
                alone_s = time.monotonic() - began
                os.killpg(purger.pid, signal.SIGSTOP)  # the ledger below, not a moving target
                purged = purged_so_far(args.redis)
                with harness.engine_for(database_url) as engine, engine.connect() as connection:
                    left = connection.execute(
                        text("SELECT count(*) FROM calls WHERE org_id = :org"), {"org": org_id}
                    ).scalar_one()
                    inbox = connection.execute(
                        text(
                            "SELECT count(*) FROM inbox WHERE org_id = "
                            "(SELECT id FROM orgs WHERE name = 'load')"
                        )
                    ).scalar_one()
                os.killpg(purger.pid, signal.SIGCONT)
    harness.flush_redis(args.redis)

    ratios = [during / without if without else 0.0 for without, during in pairs]
    ratio = statistics.median(ratios)
    print()
    print(
        f"receiver during/without the purge per round: {', '.join(f'{r:.3f}' for r in ratios)}; "
        f"median {ratio:.3f}   goal >= {GOAL_RATIO}: {'MET' if ratio >= GOAL_RATIO else 'MISSED'}"
    )
    print(
        f"calls purged per second: {loaded_calls / loaded_s:,.0f} while the receiver was loaded, "
        f"{alone_calls / alone_s:,.0f} alone ({purged:,} purged in all)"
    )
    calls_ok = left + purged == calls_before
    # A 503 at a batch's deadline can race its commit: stored, and a duplicate when retried.
    inbox_ok = accepted <= inbox <= accepted + unavailable and refused == 0
    print(
        f"purge ledger: {calls_before:,} calls at the start = {left:,} left + {purged:,} purged "
        f"-> {'OK' if calls_ok else 'MISMATCH'}"
    )
    print(
        f"receiver ledger: 202 replies {accepted:,}, 503 {unavailable}, others and errors "
        f"{refused}, inbox rows {inbox:,} -> {'OK' if inbox_ok else 'MISMATCH'}"
    )
    return 0 if calls_ok and inbox_ok else 1


if __name__ == "__main__":
    sys.exit(main())
