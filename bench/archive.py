"""The recording archive's cost: one archive run (download through the guard, SHA-256, store)
per call, for a file of a given size, into the file store and into an S3-compatible server.

Usage (from the repository root):

    uv run python bench/archive.py [--mb 5] [--calls 20] [--postgres postgresql://…/test]

A fresh Postgres database (bench/harness.py), the recording served by a loopback uvicorn in a
process of its own, `moto_server` (moto's standalone S3) in a process of its own, and the runs
in this process's main thread, as a worker thread runs `archive_recording`. Prints the baseline
(the same file streamed by a plain httpx client and dropped), then per store the wall time and
this process's CPU per archived call and per MB (moto's own CPU, in its process, not counted),
and the ledger: every call archived with the file's SHA-256, or VOID.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import harness
import httpx
from pydantic import SecretStr

from callwatch import ids
from callwatch.model.records import Recording
from callwatch.recordings import archive, copying
from callwatch.runtime import opened
from callwatch.settings import Settings
from callwatch.tables import Call, Org, RecordingArchive, Source

SERVE = """
import sys
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
import uvicorn
body = b"\\x01" * (int(sys.argv[2]) * 1024 * 1024)
app = Starlette(routes=[Route("/rec.wav", lambda r: Response(body, media_type="audio/wav"))])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def seed(settings: Settings, url: str, calls: int) -> list[str]:
    """An org, a generic source and `calls` assembled calls whose recording is pending."""
    now = datetime.now(UTC)
    call_ids = []
    with opened(settings) as rt, rt.sessions.begin() as session:
        org = Org(id=ids.new_id("org"), name=f"bench-{ids.new_token()}", created_at=now)
        source = Source(
            id=ids.new_id("src"),
            org_id=org.id,
            name="main",
            provider="generic",
            webhook_token=ids.new_token(),
            settings={},
            credentials=rt.vault.seal({"webhook_secret": "whsec_x"}),
            created_at=now,
        )
        session.add_all([org, source])
        session.flush()
        recording = Recording(status="available", url=url)
        for n in range(calls):
            call = Call(
                id=ids.new_id("call"),
                org_id=org.id,
                source_id=source.id,
                provider="generic",
                provider_call_id=f"bench-{n}",
                started_at=now,
                fields={},
                record={"recording": recording.model_dump(mode="json")},
                assembly_state="assembled",
                assembly_attempts=1,
                assembly_failures=0,
                created_at=now,
                updated_at=now,
            )
            session.add(call)
            session.flush()
            archive.plan(session, settings, call, recording, now)
            call_ids.append(call.id)
    return call_ids


def measure(settings: Settings, url: str, calls: int, mb: int) -> tuple[float, float, str]:
    call_ids = seed(settings, url, calls)
    with opened(settings) as rt:
        wall, cpu = time.monotonic(), time.process_time()
        for call_id in call_ids:
            copying.run(rt, call_id)
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        with rt.sessions() as session:
            rows = [session.get(RecordingArchive, call_id) for call_id in call_ids]
    expected = hashlib.sha256(b"\x01" * (mb * 1024 * 1024)).hexdigest()
    good = sum(1 for row in rows if row and row.status == "archived" and row.sha256 == expected)
    return (
        wall / calls,
        cpu / calls,
        f"{good}/{calls} archived with the right SHA-256"
        + (" -> OK" if good == calls else " -> VOID"),
    )


def bare(url: str, calls: int) -> tuple[float, float]:
    """The baseline: the same file streamed by a plain httpx client and dropped."""
    with httpx.Client() as client:
        wall, cpu = time.monotonic(), time.process_time()
        for _ in range(calls):
            with client.stream("GET", url) as response:
                for _chunk in response.iter_bytes():
                    pass
        return (time.monotonic() - wall) / calls, (time.process_time() - cpu) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--postgres", default=harness.DEFAULT_PG)
    args = parser.parse_args()
    harness.install_signal_handlers()
    web, s3 = harness.free_port(), harness.free_port()
    bin_dir = Path(sys.executable).parent
    servers = [
        subprocess.Popen([sys.executable, "-c", SERVE, str(web), str(args.mb)]),
        subprocess.Popen(
            [str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(s3)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        wait_port(web)
        wait_port(s3)
        endpoint = f"http://127.0.0.1:{s3}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket="bench")
        url = f"http://127.0.0.1:{web}/rec.wav"
        print(f"archive benchmark: {args.calls} calls, {args.mb} MB recording each")
        with (
            harness.temp_database(args.postgres, prefix="bench_archive") as db,
            tempfile.TemporaryDirectory() as data,
        ):
            base = Settings(
                database_url=db,
                data_dir=Path(data),
                secret_key=SecretStr("bench"),
                allow_private_targets=True,
                log_level="WARNING",
            )
            s3_settings = base.model_copy(
                update={
                    "recordings_url": "s3://bench/archive",
                    "recordings_endpoint_url": endpoint,
                    "recordings_region": "us-east-1",
                    "recordings_access_key_id": SecretStr("bench"),
                    "recordings_secret_access_key": SecretStr("bench"),
                }
            )
            wall, cpu = bare(url, args.calls)
            print(
                f"baseline, a plain httpx download: {wall * 1000:.1f} ms wall, "
                f"{cpu * 1000:.1f} ms CPU per call ({cpu * 1000 / args.mb:.1f} ms CPU per MB)"
            )
            for name, chosen in (("files", base), ("s3 (moto)", s3_settings)):
                wall, cpu, ledger = measure(chosen, url, args.calls, args.mb)
                print(
                    f"{name}: {wall * 1000:.1f} ms wall, {cpu * 1000:.1f} ms CPU per call "
                    f"({cpu * 1000 / args.mb:.1f} ms CPU per MB); ledger: {ledger}"
                )
    finally:
        for server in servers:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
