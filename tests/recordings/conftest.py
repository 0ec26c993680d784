"""Recordings served on loopback, and calls whose recording is to be archived."""

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from callwatch.model.records import Recording
from callwatch.recordings import archive
from callwatch.runtime import Runtime, opened, utcnow
from callwatch.settings import Settings
from callwatch.simulator import BackgroundServer
from callwatch.simulator.servers import silence_wav
from callwatch.tables import Call, RecordingArchive
from tests.factories import Tenant, add_call, tenant

ACCOUNT = "AC" + "1" * 32
RECORDING = "RE" + "2" * 32
TWILIO_AUTH = "Basic " + base64.b64encode(f"{ACCOUNT}:tw-token".encode()).decode()
WAV = silence_wav()


async def _drip(request: Request) -> StreamingResponse:
    async def slowly() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"\0"
            await asyncio.sleep(0.1)

    return StreamingResponse(slowly(), media_type="audio/wav")


async def _chunked(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"\0" * 1000

    return StreamingResponse(chunks(), media_type="audio/wav")


async def _twilio(request: Request) -> Response:
    if request.headers.get("authorization") != TWILIO_AUTH:
        return Response(status_code=401)
    return Response(WAV, media_type="audio/x-wav")


APP = Starlette(
    routes=[
        Route("/rec.wav", lambda r: Response(WAV, media_type="audio/wav")),
        Route("/plain.mp3", lambda r: Response(b"ID3" * 10, media_type="application/octet-stream")),
        Route("/big", lambda r: Response(b"\0" * 5000, media_type="audio/wav")),
        Route("/big-chunked", _chunked),
        Route("/drip", _drip),
        Route("/down", lambda r: Response("busy", status_code=503)),
        Route("/page", lambda r: Response("<script>alert(1)</script>", media_type="text/html")),
        Route("/empty", lambda r: Response(b"", media_type="audio/wav")),
        Route(f"/2010-04-01/Accounts/{ACCOUNT}/Recordings/{RECORDING}.wav", _twilio),
    ]
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The archive on, as it is by default (tests elsewhere leave it off: tests/conftest.py)."""
    return settings.model_copy(update={"archive_recordings": True})


@pytest.fixture(scope="module")
def platform() -> Iterator[str]:
    with BackgroundServer(APP) as server:
        yield server.url


@pytest.fixture
def owner(client: TestClient) -> Tenant:
    return tenant(client, "acme")


@contextmanager
def runtime_with(settings: Settings, **changes: Any) -> Iterator[Runtime]:
    with opened(settings.model_copy(update=changes)) as rt:
        yield rt


def pending(rt: Runtime, owner: Tenant, call_id: str, url: str, dual: str | None = None) -> None:
    """An assembled call whose recording at `url` is to be archived, as the pipeline plans it."""
    recording = Recording(status="available", url=url, dual_url=dual)
    add_call(rt, owner, call_id, recording=recording)
    with rt.sessions.begin() as session:
        call = session.get(Call, call_id)
        assert call is not None
        shown, start = archive.plan(session, rt.settings, call, recording, utcnow())
        assert start
        call.record = {
            **call.record,
            "recording": recording.model_copy(update={"archive": shown}).model_dump(mode="json"),
        }  # type: ignore[dict-item]


def twilio_recording(client: TestClient, owner: Tenant, platform: str) -> tuple[Tenant, str]:
    """A Twilio source of the owner's, its API at `platform`; and a recording's URL there."""
    created = client.post(
        "/api/sources",
        json={
            "name": "tw",
            "provider": "twilio",
            "settings": {"api_base_url": platform},
            "credentials": {"account_sid": ACCOUNT, "auth_token": "tw-token"},
        },
        headers=owner.headers,
    ).json()
    twilio = Tenant(owner.org_id, owner.key, created["id"], "tw")
    return twilio, f"{platform}/2010-04-01/Accounts/{ACCOUNT}/Recordings/{RECORDING}.wav"


def shown(client: TestClient, owner: Tenant, call_id: str) -> dict[str, Any]:
    found = client.get(f"/api/calls/{call_id}", headers=owner.headers).json()
    result: dict[str, Any] = found["recording"]["archive"]
    return result


def row(rt: Runtime, call_id: str) -> RecordingArchive:
    with rt.sessions() as session:
        found = session.get(RecordingArchive, call_id)
        assert found is not None
        session.expunge(found)
        return found
