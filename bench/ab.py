"""Receiver A/B: callwatch from two checkouts, loaded in alternating rounds; per-pair ratios.

Usage (from the repository root; each checkout needs its own `uv sync`):

    git worktree add /tmp/before <commit> && (cd /tmp/before && uv sync --frozen)
    uv run python bench/ab.py /tmp/before . [--pairs 10] [--seconds 5] [--connections 32]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

`bench/receiver.py` judges callwatch against a bare endpoint; a change worth a few percent is
lost in its run-to-run noise (the host's speed moves by ±15 % between rounds). This runs both
checkouts' `callwatch serve` at once, each with its own fresh database and Redis db, and loads
them one at a time with `bench/receiver.py`'s load generator, alternating which goes first in
each pair. It prints each round, each pair's ratio (second checkout / first) and their median,
and a ledger per checkout: every reply a 202, and as many inbox rows as 202s.

A limit's cost: `--limit-second PER_SECOND` gives the second checkout's source a rate limit (high
enough never to refuse), so `bench/ab.py . . --limit-second 100000` measures the same code with and
without one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness
import receiver


def bench(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    # Labelled, not keyed by path: both may be the same checkout (--limit-second).
    checkouts = dict(zip("AB", (Path(path).resolve() for path in args.checkouts), strict=True))
    for label, checkout in checkouts.items():
        print(f"{label} = {checkout}")
    rps: dict[str, list[float]] = {label: [] for label in checkouts}
    replies: dict[str, int] = dict.fromkeys(checkouts, 0)
    others: dict[str, int] = dict.fromkeys(checkouts, 0)  # non-202 replies and connection errors
    with contextlib.ExitStack() as stack:
        servers = []
        for index, (label, checkout) in enumerate(checkouts.items()):
            database = stack.enter_context(
                harness.temp_database(args.postgres, f"bench_ab{index}", checkout)
            )
            redis = f"{args.redis.rsplit('/', 1)[0]}/{6 + index}"
            harness.flush_redis(redis)
            port = harness.free_port()
            base = f"http://127.0.0.1:{port}"
            env = harness.callwatch_env(database, redis, base)
            server = stack.enter_context(harness.serve(env, port, checkout))
            harness.wait_http(base + "/healthz", server)
            limited = index == 1 and args.limit_second is not None
            limit = {"rate_limit": {"per_second": args.limit_second}} if limited else None
            url, secret = harness.create_source(base, limit)
            spec = receiver.LoadSpec(
                url=url,
                secret=secret,
                seconds=args.seconds,
                warmup=1.0,
                connections=args.connections,
                max_rate=args.max_rate,
                server_pid=server.pid,
                cycle=False,
            )
            servers.append((label, spec, database))
        ratios = []
        for pair in range(1, args.pairs + 1):
            results = {}
            for label, spec, _ in servers if pair % 2 else reversed(servers):
                result = results[label] = receiver.load(spec)
                rps[label].append(result.rps)
                accepted = result.statuses.get("202", 0)
                replies[label] += accepted
                others[label] += sum(result.statuses.values()) - accepted + result.errors
                print(receiver.format_row(pair, label, result), flush=True)
            ratios.append(results["B"].rps / results["A"].rps)
        balanced = True
        for label, _, database in servers:
            with harness.engine_for(database) as engine, engine.connect() as connection:
                rows = connection.execute(text("SELECT count(*) FROM inbox")).scalar_one()
            ok = rows == replies[label] and others[label] == 0
            balanced &= ok
            print(
                f"{label}: median {statistics.median(rps[label]):.0f} req/s; ledger "
                f"{replies[label]} 202s, {others[label]} other replies or connection "
                f"errors, {rows} inbox rows -> {'OK' if ok else 'VOID'}"
            )
    print(
        f"B / A per pair: {', '.join(f'{r:.3f}' for r in ratios)}; "
        f"median {statistics.median(ratios):.3f}"
    )
    return 0 if balanced else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("checkouts", nargs=2, metavar="CHECKOUT")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--max-rate", type=int, default=16000)
    parser.add_argument("--postgres", default=harness.DEFAULT_PG)
    parser.add_argument("--redis", default=harness.DEFAULT_REDIS)
    parser.add_argument("--limit-second", type=float, help="the second checkout's rate limit")
    return harness.run_main(bench, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
