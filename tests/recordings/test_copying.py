"""An archive run against a real database and recordings served on loopback: the size cap, the
deadline, the SSRF guard, Twilio's Basic auth, retries with backoff that end `failed`."""

import hashlib
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from callwatch.recordings import archive, copying
from callwatch.recordings.store import key_of, store_for
from callwatch.runtime import Runtime, utcnow
from callwatch.settings import Settings
from callwatch.tables import RecordingArchive
from tests.factories import Tenant
from tests.recordings.conftest import (
    WAV,
    pending,
    row,
    runtime_with,
    shown,
    twilio_recording,
)


def test_a_recording_and_its_dual_file_are_archived(
    runtime: Runtime, client: TestClient, owner: Tenant, platform: str
) -> None:
    pending(runtime, owner, "call_1", f"{platform}/rec.wav", f"{platform}/plain.mp3")
    assert shown(client, owner, "call_1")["status"] == "pending"
    assert copying.run(runtime, "call_1") is None
    archived = shown(client, owner, "call_1")
    assert archived == {
        "status": "archived",
        "bytes": len(WAV),
        "sha256": hashlib.sha256(WAV).hexdigest(),
        "content_type": "audio/wav",
        "archived_at": archived["archived_at"],
        "error": None,
        "dual": {
            "bytes": 30,
            "sha256": hashlib.sha256(b"ID3" * 10).hexdigest(),
            "content_type": "audio/mpeg",  # octet-stream sent: the extension says
        },
    }
    store = store_for(runtime.settings)
    assert b"".join(store.open(key_of(owner.org_id, "call_1"), 0, len(WAV) - 1)) == WAV
    assert b"".join(store.open(key_of(owner.org_id, "call_1", dual=True), 0, 29)) == b"ID3" * 10
    assert copying.run(runtime, "call_1") is None  # a duplicate message does nothing
    assert row(runtime, "call_1").attempts == 1
    stored = float(len(WAV) + 30)
    assert archive_metrics(client) == {"archived": 1.0, "retried": 0.0, "failed": 0.0, "": stored}


def test_twilio_recordings_are_fetched_with_the_accounts_basic_auth(
    runtime: Runtime, client: TestClient, owner: Tenant, platform: str
) -> None:
    twilio, url = twilio_recording(client, owner, platform)
    pending(runtime, twilio, "call_tw", url, url)  # dual-channel: one file
    assert copying.run(runtime, "call_tw") is None
    assert (shown(client, owner, "call_tw")["status"], shown(client, owner, "call_tw")["dual"]) == (
        "archived",
        None,
    )


def test_a_recording_over_the_size_cap_fails_at_once(
    settings: Settings, client: TestClient, owner: Tenant, platform: str
) -> None:
    with runtime_with(settings, recording_max_bytes=1000) as rt:
        pending(rt, owner, "call_big", f"{platform}/big")
        pending(rt, owner, "call_chunked", f"{platform}/big-chunked")
        assert copying.run(rt, "call_big") is None
        assert copying.run(rt, "call_chunked") is None
    assert shown(client, owner, "call_big") == failed(
        f"GET {platform}/big: HTTP 200, audio/wav, 5000 bytes: larger than 1000 bytes"
    )
    assert shown(client, owner, "call_chunked") == failed(
        f"GET {platform}/big-chunked: HTTP 200, audio/wav: larger than 1000 bytes"
    )


def failed(error: str) -> dict[str, Any]:
    return {
        "status": "failed",
        "bytes": None,
        "sha256": None,
        "content_type": None,
        "archived_at": None,
        "error": error,
        "dual": None,
    }


def test_a_download_past_its_deadline_is_retried_then_fails(
    settings: Settings, client: TestClient, owner: Tenant, platform: str
) -> None:
    with runtime_with(
        settings, recording_deadline_s=0.3, recording_max_failures=2, recording_backoff_base_s=4
    ) as rt:
        pending(rt, owner, "call_slow", f"{platform}/drip")
        countdown = copying.run(rt, "call_slow")
        assert countdown is not None
        assert 2.0 <= countdown < 6.0  # 4 s, jittered ±50 %
        first = row(rt, "call_slow")
        error = f"GET {platform}/drip: deadline exceeded"
        assert (first.status, first.failures, first.last_error) == ("pending", 1, error)
        assert shown(client, owner, "call_slow")["status"] == "pending"
        assert copying.run(rt, "call_slow") is None
    assert shown(client, owner, "call_slow") == failed(error)


def test_retryable_answers_back_off_and_end_failed_with_the_last_error(
    settings: Settings, client: TestClient, owner: Tenant, platform: str
) -> None:
    with runtime_with(settings, recording_max_failures=3, recording_backoff_base_s=1) as rt:
        pending(rt, owner, "call_down", f"{platform}/down")
        countdowns = [copying.run(rt, "call_down") for _ in range(3)]
    assert countdowns[2] is None
    assert [round(countdown or 0, 6) for countdown in countdowns[:2]] == [
        pytest.approx(1.0, abs=0.5),
        pytest.approx(2.0, abs=1.0),
    ]  # 1 s then 2 s, jittered ±50 %
    assert shown(client, owner, "call_down") == failed(f"GET {platform}/down: HTTP 503")
    assert archive_metrics(client) == {"archived": 0.0, "retried": 2.0, "failed": 1.0, "": 0.0}


def archive_metrics(client: TestClient) -> dict[str, float]:
    """`callwatch_recording_archives_total` by outcome, and the bytes archived (under "")."""
    wanted = ("callwatch_recording_archives", "callwatch_recording_archived_bytes")
    return {
        sample.labels.get("outcome", ""): sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        if family.name in wanted
        for sample in family.samples
    }


def test_a_private_address_is_refused_by_the_guard(
    settings: Settings, client: TestClient, owner: Tenant, platform: str
) -> None:
    with runtime_with(settings, allow_private_targets=False) as rt:
        pending(rt, owner, "call_inside", f"{platform}/rec.wav")
        pending(rt, owner, "call_meta", "http://169.254.169.254/latest/meta-data/")
        assert copying.run(rt, "call_inside") is None
        assert copying.run(rt, "call_meta") is None
    assert shown(client, owner, "call_inside") == failed(
        f"GET {platform}/rec.wav: refused: 127.0.0.1 resolves to 127.0.0.1 (loopback)"
    )
    assert shown(client, owner, "call_meta") == failed(
        "GET http://169.254.169.254/latest/meta-data/: refused: 169.254.169.254 resolves to "
        "169.254.169.254 (cloud metadata)"
    )


def test_what_is_not_a_recording_is_refused_not_stored(
    runtime: Runtime, client: TestClient, owner: Tenant, platform: str
) -> None:
    pending(runtime, owner, "call_html", f"{platform}/page")
    pending(runtime, owner, "call_empty", f"{platform}/empty")
    assert copying.run(runtime, "call_html") is None
    assert copying.run(runtime, "call_empty") is None
    assert shown(client, owner, "call_html") == failed(
        f"GET {platform}/page: HTTP 200, text/html: not a recording"
    )
    assert shown(client, owner, "call_empty") == failed(f"GET {platform}/empty: an empty file")


def test_runs_are_bounded_even_when_none_ends(
    settings: Settings, client: TestClient, owner: Tenant, platform: str
) -> None:
    """A run that never reports (its worker killed each time) is counted at its claim."""
    with runtime_with(settings, recording_max_failures=1) as rt:
        pending(rt, owner, "call_killed", f"{platform}/rec.wav")
        for _ in range(archive.RUNS_PER_FAILURE):
            with rt.sessions.begin() as session:
                assert archive.claim(session, rt.vault, "call_killed", utcnow(), rt.settings)
                session.get(RecordingArchive, "call_killed").lease_until = None  # type: ignore[union-attr]
        assert copying.run(rt, "call_killed") is None
    assert shown(client, owner, "call_killed") == failed("gave up after 3 runs")
