"""The web process's CPU per webhook: callwatch's ASGI app called in-process, beside a bare app.

Usage (from the repository root):

    uv run python bench/web_cpu.py [--rounds 8] [--round-requests 2000] [--connections 32]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/5]
        [--limit-second 100000]

`bench/receiver.py` measures the whole receiver: load client, web process, Postgres and Redis
sharing two cores, where one machine's runs can differ by half. This one isolates the web
process's own work. It calls the ASGI app of `callwatch.app.create_app` directly from this
process (no uvicorn, no HTTP sockets), `--connections` requests in flight, with a fresh Postgres
database and Redis behind it, and reads this process's CPU time (intake's verify, parse and
group commit included; Postgres's work not). A bare Starlette app (one route, 200 "ok") runs the
same way, in rounds alternating with callwatch's, as the baseline. Prints the median, min and
max µs of CPU per request for each, the ratio, and the status ledger (every callwatch request
must be a 202).

`--limit-second PER_SECOND` adds a third contender: the same app, its webhooks to a second source
with that rate limit (high enough never to refuse); it prints the limit's cost per webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness

Request = tuple[list[tuple[bytes, bytes]], bytes]  # headers, body
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def signed_requests(secret: str, count: int) -> list[Request]:
    """bench/receiver.py's webhooks, with their headers as an ASGI scope carries them."""
    out = []
    for content, signed in harness.signed_webhooks(secret, count):
        headers = {"host": "127.0.0.1"} | signed
        out.append(([(k.encode(), v.encode()) for k, v in headers.items()], content))
    return out


async def drive(
    app: App, path: str, requests: Sequence[Request], connections: int, statuses: Counter[int]
) -> float:
    """Send the requests, `connections` at a time; returns this process's CPU µs per request."""

    async def one(headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # a client that stays connected
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] += 1

        await app(scope, receive, send)

    pending = iter(requests)

    async def connection() -> None:
        for headers, body in pending:
            await one(headers, body)

    began = time.process_time()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return (time.process_time() - began) / len(requests) * 1e6


async def lifespan(app: Any, body: Callable[[], Awaitable[None]]) -> None:
    """Run `body` between the app's start-up and shut-down, as uvicorn would."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "state": {}}, inbox.get, outbox.put))
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"callwatch did not start: {started.get('message')}")
    try:
        await body()
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


def sources_in(
    database_url: str, secret_key: str, limit_second: float | None
) -> list[tuple[str, str]]:
    """An org and a generic source, and one with that rate limit if given; returns each's
    (webhook token, signing secret)."""
    from callwatch.crypto import Vault
    from callwatch.db import make_engine, make_sessionmaker, transaction
    from callwatch.orgs import tenancy
    from callwatch.outbound.ssrf import Guard

    engine = make_engine(database_url, name="bench")
    try:
        now = datetime.now(UTC)
        settings = [tenancy.SourceSettings()]
        if limit_second is not None:
            limit = {"per_second": limit_second}
            settings.append(tenancy.SourceSettings.model_validate({"rate_limit": limit}))
        made = []
        with transaction(make_sessionmaker(engine)) as session:
            org, _ = tenancy.create_org(session, tenancy.OrgIn(name="bench"), now)
            for index, each in enumerate(settings):
                data = tenancy.SourceIn(name=f"bench{index}", provider="generic", settings=each)
                source, secret = tenancy.create_source(
                    session, Vault(secret_key), org.id, data, now, guard=Guard(allow_private=False)
                )
                assert secret is not None
                made.append((source.webhook_token, secret))
        return made
    finally:
        engine.dispose()


def bench(args: argparse.Namespace) -> int:
    from callwatch.app import create_app
    from callwatch.settings import Settings

    harness.flush_redis(args.redis)
    with harness.temp_database(args.postgres) as database_url:
        sources = sources_in(database_url, harness.SECRET_KEY, args.limit_second)
        settings = Settings(
            database_url=database_url,
            redis_url=args.redis,
            secret_key=harness.SECRET_KEY,
            admin_token=harness.ADMIN_TOKEN,
            public_url="http://127.0.0.1:8000",
            log_level="WARNING",
        )
        size = args.round_requests
        app = create_app(settings)
        # name → (app, path, requests); "bare" takes callwatch's requests, unverified.
        contenders: dict[str, tuple[App, str, list[Request]]] = {}
        for name, (token, secret) in zip(("callwatch", "limited"), sources, strict=False):
            requests = signed_requests(secret, size * (args.rounds + 1))
            contenders[name] = (app, f"/webhooks/{token}", requests)
        contenders = {"bare": (harness.bare_app(), *contenders["callwatch"][1:])} | contenders
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        statuses: dict[str, Counter[int]] = {name: Counter() for name in contenders}

        async def rounds() -> None:
            for name, (each, path, requests) in contenders.items():
                if name != "bare":
                    await drive(each, path, requests[:size], args.connections, Counter())
            for index in range(args.rounds):
                order = list(contenders) if index % 2 == 0 else list(reversed(contenders))
                for name in order:
                    each, path, requests = contenders[name]
                    batch = requests[(index + 1) * size : (index + 2) * size]
                    used = await drive(each, path, batch, args.connections, statuses[name])
                    cpu[name].append(used)
                print(f"round {index + 1}/{args.rounds}", file=sys.stderr)

        import uvloop

        uvloop.run(lifespan(app, rounds))

    print(
        f"web-process CPU per request, {args.rounds} rounds of {size}, {args.connections} in flight"
    )
    for name, values in cpu.items():
        print(
            f"{name:<10} median {statistics.median(values):7.1f} µs   min {min(values):7.1f}"
            f"   max {max(values):7.1f}   statuses {dict(statuses[name])}"
        )
    ratio = statistics.median(cpu["callwatch"]) / statistics.median(cpu["bare"])
    print(f"callwatch / bare: {ratio:.1f} times the CPU")
    if "limited" in cpu:
        pairs = [
            limited / plain for limited, plain in zip(cpu["limited"], cpu["callwatch"], strict=True)
        ]
        print(f"limited / callwatch per round: median {statistics.median(pairs):.3f}")
    expected = args.rounds * size
    ok = True
    for name in cpu.keys() - {"bare"}:
        ok &= statuses[name] == Counter({202: expected})
        print(f"ledger {name}: {expected} sent, {dict(statuses[name])}")
    print(f"ledger -> {'OK' if ok else 'VOID'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--round-requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--postgres", default=harness.DEFAULT_PG)
    parser.add_argument("--redis", default=harness.DEFAULT_REDIS)
    parser.add_argument("--limit-second", type=float, help="add a source with this rate limit")
    return harness.run_main(bench, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
