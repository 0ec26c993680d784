"""Dashboard page speed at 1,000,000 calls: `/` (the overview) and `/calls` per window, over HTTP.

Usage (from the repository root):

    uv run python bench/dashboard.py --keep     # seed dash_bench (1M + 50k calls), measure, keep it
    uv run python bench/dashboard.py --reuse    # measure dash_bench as it is
        [--calls 1000000] [--requests 30] [--warmup 3] [--database dash_bench]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

The database is seeded by bench/seed.py exactly as bench/queries.py seeds it (`--keep` drops and
recreates `--database` first; without `--keep` or `--reuse` a temporary database is seeded and
dropped). A redis-server of its own and `python -m callwatch serve` (one uvicorn process, as in
production); the client signs in through the real `/login` form (CSRF token, session cookie),
then sends `--requests` sequential GETs per case over one keep-alive connection, after `--warmup`
unmeasured ones. Each reply must be 200 and an HTML page. The time is the request's wall time on
loopback: server time plus well under a millisecond of client. Reported per window (24h, 7d, 30d,
90d): p50, p95, max and the server process's CPU per request. The goal (issue 24): the overview
renders in < 300 ms server time at 1,000,000 calls, read here as p95 < 300 ms.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import sys
import time
from urllib.parse import urlencode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness
import queries

GOAL_MS = 300.0
WINDOWS = ("24h", "7d", "30d", "90d")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A signed-in dashboard session over one keep-alive connection."""

    def __init__(self, port: int, api_key: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookies: dict[str, str] = {}
        status, body, _ = self.request("GET", "/login")
        token = CSRF.search(body.decode())
        assert status == 200, (status, body[:200])
        assert token is not None, body[:200]
        form = urlencode({"api_key": api_key, "csrf_token": token.group(1)})
        status, _, _ = self.request("POST", "/login", form)
        assert status == 303, status
        assert "callwatch_session" in self.cookies, self.cookies

    def request(self, method: str, path: str, form: str | None = None) -> tuple[int, bytes, float]:
        headers = {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if form is not None:
            headers["content-type"] = "application/x-www-form-urlencoded"
        began = time.perf_counter()
        self.connection.request(method, path, body=form, headers=headers)
        response = self.connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - began
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                cookie, _, _ = value.partition(";")
                key, _, content = cookie.partition("=")
                self.cookies[key.strip()] = content.strip('"')
        return response.status, body, elapsed


def measure(
    browser: Browser, pid: int, path: str, requests: int, warmup: int
) -> queries.Case | str:
    """The case's timings, or what went wrong."""
    case = queries.Case(path, f"p95 < {GOAL_MS:.0f} ms", GOAL_MS if path.startswith("/?") else None)
    for _ in range(warmup):
        browser.request("GET", path)
    cpu_before = harness.cpu_seconds(pid)
    for _ in range(requests):
        status, body, seconds = browser.request("GET", path)
        if status != 200 or b"<html" not in body:
            return f"{path}: {status} {body[:200]!r}"
        case.latencies.append(seconds)
    case.server_cpu_s = harness.cpu_seconds(pid) - cpu_before
    case.load = os.getloadavg()[0]
    return case


def bench(args: argparse.Namespace) -> int:
    print(f"dashboard benchmark: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
    args.only_stats = True
    with queries.database(args) as (database_url, seeded):
        facts = queries.facts_of(database_url, seeded.orgs[0].api_key if seeded else None)
        print(f"database {database_url.rsplit('/', 1)[1]}: acme {facts.calls:,} calls", flush=True)
        redis_port, port = harness.free_port(), harness.free_port()
        redis_argv = ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"]
        base = f"http://127.0.0.1:{port}"
        env = harness.callwatch_env(database_url, f"redis://127.0.0.1:{redis_port}/0", base)
        problems: list[str] = []
        cases: list[queries.Case] = []
        with queries.quiet_child(redis_argv) as redis_server:
            queries.wait_redis(redis_port, redis_server)
            with harness.serve(env, port) as server:
                harness.wait_http(base + "/healthz", server)
                browser = Browser(port, facts.api_key)
                print(queries.HEADER, flush=True)
                for window in WINDOWS:
                    for path in (f"/?window={window}", f"/calls?{urlencode(_since(window))}"):
                        result = measure(browser, server.pid, path, args.requests, args.warmup)
                        if isinstance(result, str):
                            problems.append(result)
                            continue
                        cases.append(result)
                        print(result.row(), flush=True)
    missed = [case.name for case in cases if case.met is False]
    print(f"overview goal p95 < {GOAL_MS:.0f} ms: " + (f"MISSED {missed}" if missed else "MET"))
    for problem in problems:
        print(f"  - {problem}")
    return 1 if problems or missed else 0


def _since(window: str) -> dict[str, str]:
    """The call log over the same window as the overview (its date_from filter)."""
    hours = {"24h": 24, "7d": 24 * 7, "30d": 24 * 30, "90d": 24 * 90}[window]
    since = time.time() - hours * 3600
    return {"date_from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30, help="measured requests per case")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured requests per case")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--keep", action="store_true", help="seed --database and keep it")
    mode.add_argument("--reuse", action="store_true", help="measure --database as it is")
    parser.add_argument("--database", default="dash_bench")
    parser.add_argument("--postgres", default=harness.DEFAULT_PG)
    args = parser.parse_args()
    return harness.run_main(bench, args)


if __name__ == "__main__":
    sys.exit(main())
