"""`GET /api/calls/{call_id}/recording[/dual]`: the archived file with byte ranges; before it is
archived a redirect to a URL that needs no secret, else 404; another org's call is 404."""

import hashlib

import pytest
from starlette.testclient import TestClient

from callwatch.recordings import copying
from callwatch.runtime import Runtime, opened
from callwatch.settings import Settings
from tests.conftest import S3Server
from tests.dashboard.signing_in import sign_in
from tests.factories import Tenant, add_call, tenant
from tests.recordings.conftest import WAV, pending, twilio_recording

STEREO = "/plain.mp3"  # the loopback platform's other file: 30 bytes of "ID3"


@pytest.fixture(params=["files", "s3"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Each test on the file store and on a real S3-compatible server."""
    if request.param == "files":
        return settings
    s3: S3Server = request.getfixturevalue("s3_server")
    return s3.settings(settings, prefix=f"served-{settings.data_dir.name}")


@pytest.fixture
def archived(runtime: Runtime, owner: Tenant, platform: str) -> str:
    pending(runtime, owner, "call_1", f"{platform}/rec.wav", f"{platform}{STEREO}")
    assert copying.run(runtime, "call_1") is None
    return "call_1"


def test_the_whole_file_is_served_with_its_facts(
    client: TestClient, owner: Tenant, archived: str
) -> None:
    response = client.get(f"/api/calls/{archived}/recording", headers=owner.headers)
    assert (response.status_code, response.content) == (200, WAV)
    assert {name: response.headers[name] for name in HEADERS} == {
        "content-type": "audio/wav",
        "content-length": str(len(WAV)),
        "accept-ranges": "bytes",
        "etag": f'"{hashlib.sha256(WAV).hexdigest()}"',
        "x-content-type-options": "nosniff",
        "cache-control": "private, max-age=3600",
    }


HEADERS = (
    "content-type",
    "content-length",
    "accept-ranges",
    "etag",
    "x-content-type-options",
    "cache-control",
)


@pytest.mark.parametrize(
    ("asked", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len(WAV) - 1),
        ("bytes=-44", len(WAV) - 44, len(WAV) - 1),
    ],
)
def test_a_range_is_206_with_its_content_range(
    client: TestClient, owner: Tenant, archived: str, asked: str, first: int, last: int
) -> None:
    response = client.get(
        f"/api/calls/{archived}/recording", headers=owner.headers | {"range": asked}
    )
    assert (
        response.status_code,
        response.headers["content-range"],
        response.headers["content-length"],
        response.content,
    ) == (206, f"bytes {first}-{last}/{len(WAV)}", str(last - first + 1), WAV[first : last + 1])


def test_a_range_past_the_end_is_416_with_the_size(
    client: TestClient, owner: Tenant, archived: str
) -> None:
    response = client.get(
        f"/api/calls/{archived}/recording",
        headers=owner.headers | {"range": f"bytes={len(WAV)}-"},
    )
    assert (response.status_code, response.headers["content-range"], response.json()) == (
        416,
        f"bytes */{len(WAV)}",
        {
            "type": "about:blank",
            "title": "Range not satisfiable",
            "status": 416,
            "detail": f"Range: starts at or past the end of {len(WAV)} bytes",
            "field": "Range",
        },
    )


def test_the_dual_channel_file_is_served_too(
    client: TestClient, owner: Tenant, archived: str
) -> None:
    response = client.get(
        f"/api/calls/{archived}/recording/dual", headers=owner.headers | {"range": "bytes=0-2"}
    )
    assert (response.status_code, response.content, response.headers["content-type"]) == (
        206,
        b"ID3",
        "audio/mpeg",
    )


def test_another_orgs_call_is_404(client: TestClient, owner: Tenant, archived: str) -> None:
    other = tenant(client, "globex")
    for path in (f"/api/calls/{archived}/recording", f"/api/calls/{archived}/recording/dual"):
        response = client.get(path, headers=other.headers)
        assert (response.status_code, response.json()["detail"]) == (404, f"no call {archived!r}")
    assert client.get(f"/api/calls/{archived}/recording").status_code == 401


def test_a_dashboard_session_opens_the_door_for_its_own_org_only(
    client: TestClient, owner: Tenant, archived: str
) -> None:
    other = tenant(client, "globex")
    globex_browser = TestClient(client.app)
    sign_in(client, owner.key)
    sign_in(globex_browser, other.key)
    path = f"/api/calls/{archived}/recording"

    whole = client.get(path)
    part = client.get(path, headers={"range": "bytes=0-99"})
    theirs = globex_browser.get(path)

    assert (whole.status_code, whole.content) == (200, WAV)
    assert (part.status_code, part.content) == (206, WAV[:100])
    assert (theirs.status_code, theirs.json()["detail"]) == (404, f"no call {archived!r}")


def test_a_session_opens_only_the_recordings_door(client: TestClient, owner: Tenant) -> None:
    sign_in(client, owner.key)
    assert client.get("/api/calls").status_code == 401


def test_before_it_is_archived_a_public_url_is_a_redirect(
    runtime: Runtime, client: TestClient, owner: Tenant, platform: str
) -> None:
    pending(runtime, owner, "call_2", f"{platform}/rec.wav?sig=abc")
    response = client.get(
        "/api/calls/call_2/recording", headers=owner.headers, follow_redirects=False
    )
    assert (response.status_code, response.headers["location"]) == (
        307,
        f"{platform}/rec.wav?sig=abc",
    )
    no_dual = client.get("/api/calls/call_2/recording/dual", headers=owner.headers)
    assert (no_dual.status_code, no_dual.json()["detail"]) == (
        404,
        "the call has no recording archived",
    )


def test_before_it_is_archived_a_url_that_needs_a_secret_is_404(
    runtime: Runtime, client: TestClient, owner: Tenant, platform: str
) -> None:
    twilio, url = twilio_recording(client, owner, platform)
    pending(runtime, twilio, "call_tw", url)
    response = client.get("/api/calls/call_tw/recording", headers=owner.headers)
    assert (response.status_code, response.json()["detail"]) == (
        404,
        "the call's recording is not archived yet (its URL needs credentials)",
    )


def test_a_call_without_a_recording_is_404(
    runtime: Runtime, client: TestClient, owner: Tenant
) -> None:
    from callwatch.model.records import Recording

    add_call(runtime, owner, "call_3", recording=Recording(status="missing"))
    response = client.get("/api/calls/call_3/recording", headers=owner.headers)
    assert (response.status_code, response.json()["detail"]) == (
        404,
        "the call has no recording archived",
    )


def test_the_openapi_document_describes_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    one = paths["/api/calls/{call_id}/recording"]["get"]
    assert sorted(one["responses"]) == ["200", "206", "307", "401", "404", "416", "503"]
    assert "/api/calls/{call_id}/recording/dual" in paths


def test_a_store_that_lost_the_file_is_404_not_500(
    settings: Settings, client: TestClient, owner: Tenant, archived: str
) -> None:
    from callwatch.recordings.store import key_of, store_for

    with opened(settings) as rt:
        store_for(rt.settings).delete(key_of(owner.org_id, archived))
    response = client.get(f"/api/calls/{archived}/recording", headers=owner.headers)
    assert (response.status_code, response.json()["detail"]) == (
        404,
        "the archived recording is not in the store",
    )
