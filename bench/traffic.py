"""Pipeline traffic in the background: calls flowing end to end while another benchmark measures.

`bench/queries.py --under-load RATE` uses it; it needs a running `callwatch serve` and Redis.
It starts two `callwatch worker` processes and a `DetailServer`, creates an org
"traffic-<pid>" with a generic source whose details come from that server, and then, on a
thread of its own, offers simulated calls at `rate` per second (bench/pipeline.py's players:
each call's events in order)
in chunks of `CHUNK_S` seconds of calls, until stopped (a 503 is sent again, as a platform
would). Stopping waits until every call it sent
is assembled or failed, and returns the ledger: sent = assembled + failed (+ assembled without
its recording); and the end-to-end rate the pipeline kept while the other benchmark ran
(assembled calls / seconds from the first call until all were settled).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import harness
import pipeline
from sqlalchemy import Engine, text

from callwatch.simulator import DetailServer, make_call

CHUNK_S = 5.0
RETRIES = 10  # a 503 (the database busy past intake's deadline) is sent again, as platforms do
CONCURRENCY = 32
WORKER_THREADS = 8

STATES_SQL = text("""
    SELECT c.assembly_state, c.record -> 'recording' ->> 'status' = 'missing', count(*)
    FROM calls c JOIN sources s ON s.id = c.source_id
    WHERE s.name = :name GROUP BY 1, 2
""")


@dataclass
class Ledger:
    sent: int = 0
    assembled: int = 0
    missing: int = 0
    failed: int = 0
    rejected: dict[int, int] = field(default_factory=dict)
    retried: int = 0  # requests sent again after a 503 or 429
    seconds: float = 0.0  # from the first call to the stop
    settled_in_s: float = 0.0  # from the stop until every call was settled

    @property
    def balanced(self) -> bool:
        return self.sent == self.assembled + self.missing + self.failed and not self.rejected

    @property
    def calls_per_s(self) -> float:
        """Counting the time to settle the backlog at the stop: what the pipeline kept up with."""
        elapsed = self.seconds + self.settled_in_s
        return (self.assembled + self.missing) / elapsed if elapsed else 0.0

    def text(self) -> str:
        verdict = "OK" if self.balanced else "VOID"
        return (
            f"pipeline under the benchmark: {self.calls_per_s:.1f} calls/s assembled over "
            f"{self.seconds:.0f} s (settled {self.settled_in_s:.1f} s after the stop); ledger: "
            f"sent {self.sent} = assembled {self.assembled} + failed {self.failed} + "
            f"missing-recording {self.missing}; {self.retried} requests retried after a 503; "
            f"non-202 at the end {self.rejected} -> {verdict}"
        )


@contextlib.contextmanager
def flowing(
    base: str, env: dict[str, str], redis_url: str, engine: Engine, rate: float
) -> Iterator[Ledger]:
    """Calls flowing at `rate` per second for the duration of the block; the ledger after it."""
    ledger = Ledger()
    stop = threading.Event()
    hostnames = [f"traffic-{n}-{os.getpid()}@{socket.gethostname()}" for n in (1, 2)]
    argv = [harness.PYTHON, "-m", "callwatch", "worker", "--concurrency", str(WORKER_THREADS)]
    with (
        DetailServer() as details,
        harness.child([*argv, "--hostname", hostnames[0]], env),
        harness.child([*argv, "--hostname", hostnames[1]], env),
    ):
        # An org of its own per run: a database measured again (`--reuse`) keeps the last one's.
        name = f"traffic-{os.getpid()}"
        url, secret = harness.create_source(base, {"detail_url": details.detail_url}, name)
        harness.wait_workers(redis_url, hostnames)
        rng = random.Random(1)

        def offer() -> None:
            while not stop.is_set():
                calls = [
                    make_call(rng, datetime.now(UTC), recording_base=details.url)
                    for _ in range(int(rate * CHUNK_S))
                ]
                for call in calls:
                    details.add(call, recording_after_s=0)
                sending = pipeline.send_all(url, secret, calls, CONCURRENCY, rate, RETRIES)
                sent = asyncio.run(sending)
                ledger.sent += len(calls)
                ledger.retried += sent.retried
                for status, count in (sent.rejected or {}).items():
                    ledger.rejected[status] = ledger.rejected.get(status, 0) + count

        began = time.monotonic()
        sender = threading.Thread(target=offer, name="traffic", daemon=True)
        sender.start()
        try:
            yield ledger
        finally:
            stop.set()
            sender.join()
            ledger.seconds = time.monotonic() - began
            ledger.settled_in_s = _settle(engine, ledger, name)


def _settle(engine: Engine, ledger: Ledger, name: str, timeout_s: float = 300.0) -> float:
    began = time.monotonic()
    while True:
        with engine.connect() as connection:
            rows = connection.execute(STATES_SQL, {"name": name}).all()
        counts = {(state, bool(missing)): n for state, missing, n in rows}
        ledger.failed = sum(n for (state, _), n in counts.items() if state == "failed")
        ledger.missing = counts.get(("assembled", True), 0)
        ledger.assembled = counts.get(("assembled", False), 0)
        settled = ledger.assembled + ledger.missing + ledger.failed
        if settled >= ledger.sent or time.monotonic() - began > timeout_s:
            return time.monotonic() - began
        time.sleep(0.2)
