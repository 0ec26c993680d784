"""The whole path on real parts: webhook → worker → record assembled → archive task → the file
in the org's store (files, or a real S3-compatible server) → served by the API."""

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from callwatch.pipeline import sweeper
from callwatch.runtime import Runtime, utcnow
from callwatch.settings import Settings
from callwatch.simulator import DetailServer
from callwatch.simulator.servers import silence_wav
from callwatch.tables import RecordingArchive
from tests.conftest import S3Server, create_org, create_source, path_of, signed
from tests.factories import Tenant, eventually, wait_for_call
from tests.pipeline.test_steps import hand_call
from tests.recordings.conftest import pending, row
from workers import tasks

MONO, STEREO = silence_wav(), silence_wav(channels=2)


@pytest.fixture(params=["files", "s3"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    if request.param == "files":
        return settings
    s3: S3Server = request.getfixturevalue("s3_server")
    return s3.settings(settings, prefix=f"e2e-{settings.data_dir.name}")


@pytest.fixture
def platform(client: TestClient, worker: None) -> Iterator[dict[str, Any]]:
    key = create_org(client)
    with DetailServer() as server:
        source = create_source(client, key, settings={"detail_url": server.detail_url})
        yield {"key": key, "source": source, "server": server}


def call_in(client: TestClient, platform: dict[str, Any], call_id: str) -> None:
    """A finished call whose recording the loopback platform serves (mono, and stereo apart)."""
    from callwatch.simulator import events_for

    call = hand_call(call_id)
    platform["server"].add(call)
    for body in events_for(call, embed_detail=False):
        raw = json.dumps(body).encode()
        headers = signed(platform["source"]["webhook_secret"], raw)
        response = client.post(
            path_of(platform["source"]["webhook_url"]), content=raw, headers=headers
        )
        assert response.status_code == 202, response.text


def archive_is(status: str) -> Any:
    def done(record: dict[str, Any]) -> bool:
        archive = (record.get("recording") or {}).get("archive")
        return bool(archive and archive["status"] == status)

    return done


def test_an_assembled_calls_recording_is_archived_and_served(
    client: TestClient, platform: dict[str, Any]
) -> None:
    call_in(client, platform, "rec-e2e-1")
    record = wait_for_call(client, platform["key"], "rec-e2e-1", archive_is("archived"))
    url = record["recording"]["url"]
    assert record["recording"] == {
        "status": "available",
        "url": url,  # the platform's URL stays beside the archive
        "dual_url": f"{url}?channels=2",
        "available_at": record["recording"]["available_at"],
        "archive": {
            "status": "archived",
            "bytes": len(MONO),
            "sha256": hashlib.sha256(MONO).hexdigest(),
            "content_type": "audio/wav",
            "archived_at": record["recording"]["archive"]["archived_at"],
            "error": None,
            "dual": {
                "bytes": len(STEREO),
                "sha256": hashlib.sha256(STEREO).hexdigest(),
                "content_type": "audio/wav",
            },
        },
    }
    headers = {"authorization": f"Bearer {platform['key']}"}
    served = client.get("/api/calls/rec-e2e-1/recording", headers=headers)
    dual = client.get("/api/calls/rec-e2e-1/recording/dual", headers=headers)
    assert (served.status_code, served.content, dual.status_code, dual.content) == (
        200,
        MONO,
        200,
        STEREO,
    )
    # Downloaded once each, however many events rebuilt the record.
    assert platform["server"].recording_requests("rec-e2e-1") == 2


def test_an_org_that_keeps_no_copies_has_its_archive_skipped(
    client: TestClient, platform: dict[str, Any]
) -> None:
    headers = {"authorization": f"Bearer {platform['key']}"}
    patched = client.patch("/api/settings", json={"archive_recordings": False}, headers=headers)
    assert patched.status_code == 200, patched.text
    call_in(client, platform, "rec-e2e-2")
    record = wait_for_call(client, platform["key"], "rec-e2e-2", archive_is("skipped"))
    assert record["recording"]["archive"] == {
        "status": "skipped",
        "bytes": None,
        "sha256": None,
        "content_type": None,
        "archived_at": None,
        "error": None,
        "dual": None,
    }
    served = client.get("/api/calls/rec-e2e-2/recording", headers=headers, follow_redirects=False)
    assert (served.status_code, served.headers["location"]) == (307, record["recording"]["url"])
    assert platform["server"].recording_requests("rec-e2e-2") == 0


def test_an_archive_whose_message_was_lost_is_sent_again_by_the_sweeper(
    runtime: Runtime, client: TestClient, worker: None, settings: Settings
) -> None:
    from tests.factories import tenant

    owner: Tenant = tenant(client, "acme")
    with DetailServer() as server:
        url = f"{server.url}/recordings/call_lost.wav"  # a call the platform does not know
        pending(runtime, owner, "call_lost", url)
        with runtime.sessions.begin() as session:
            found = session.get(RecordingArchive, "call_lost")
            assert found is not None
            found.next_at = utcnow() - timedelta(seconds=5)  # its message never came
        with runtime.sessions.begin() as session:
            assert sweeper.sweep(session, utcnow(), 0).archive_ids == ["call_lost"]
        with runtime.sessions.begin() as session:
            assert sweeper.sweep(session, utcnow(), 1).archive_ids == []  # pushed forward
        with runtime.sessions.begin() as session:
            found = session.get(RecordingArchive, "call_lost")
            assert found is not None
            found.next_at = utcnow() - timedelta(seconds=5)
        tasks.sweep.delay()
        eventually(lambda: row(runtime, "call_lost").status != "pending")
    assert (row(runtime, "call_lost").status, row(runtime, "call_lost").last_error) == (
        "failed",
        f"GET {url}: HTTP 404",
    )
