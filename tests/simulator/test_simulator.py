"""The simulated platforms: calls, webhook bodies, the registry, detail server and runner."""

import contextlib
import io
import itertools
import json
import random
import socket
import threading
import time
import wave
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from callwatch import signatures
from callwatch.app import create_app
from callwatch.errors import Unauthorized
from callwatch.model.events import CallStatus
from callwatch.model.records import CallDetails, Recording
from callwatch.providers.atoms import AtomsProvider
from callwatch.providers.base import FetchContext, SourceConfig
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.simulator import (
    PLATFORMS,
    SIM_RECORDING_BASE,
    BackgroundServer,
    DetailServer,
    Platform,
    Progress,
    SimCall,
    atoms,
    events_for,
    make_call,
    run_simulation,
    signed_request,
)
from tests.conftest import create_org, path_of

NOW = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
SECRET = signatures.new_secret()


def _calls(count: int = 400) -> list[SimCall]:
    return [make_call(random.Random(seed), NOW) for seed in range(count)]


def _call_with(status: CallStatus) -> SimCall:
    return next(call for call in _calls() if call.status is status)


def _base_data(call: SimCall, status: str) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "status": status,
        "agent_id": call.agent_id,
        "agent_name": call.agent_name,
        "direction": call.direction,
        "from_number": call.from_number,
        "to_number": call.to_number,
        "campaign_id": call.campaign_id,
        "metadata": {},
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- calls


def test_make_call_is_deterministic_for_a_seed() -> None:
    first = make_call(random.Random(42), NOW)
    assert make_call(random.Random(42), NOW) == first
    assert make_call(random.Random(43), NOW).call_id != first.call_id
    assert first.ended_at == NOW


def test_status_mix_is_mostly_completed() -> None:
    counts = Counter(call.status for call in _calls(2000))
    assert set(counts) == {
        CallStatus.completed,
        CallStatus.no_answer,
        CallStatus.busy,
        CallStatus.failed,
        CallStatus.canceled,
    }
    assert 1400 < counts[CallStatus.completed] < 1600
    assert 140 < counts[CallStatus.no_answer] < 260
    for status in (CallStatus.busy, CallStatus.failed, CallStatus.canceled):
        assert 60 < counts[status] < 140


def test_completed_calls_are_realistic() -> None:
    completed = [call for call in _calls() if call.status is CallStatus.completed]
    interrupted = 0
    for call in completed:
        detail = call.detail
        transcript = detail.transcript or []
        samples = detail.latency_samples
        cost = detail.cost
        assert call.answered_at is not None
        assert call.started_at < call.ringing_at < call.answered_at < call.ended_at
        assert detail.duration_s == (call.ended_at - call.answered_at).total_seconds()
        assert detail.ring_duration_s == call.ring_s
        assert detail.end_reason in {"user_hangup", "agent_hangup", "transferred"}
        assert [u.role for u in transcript] == ["assistant", "user"] * (len(transcript) // 2) + [
            "assistant"
        ] * (len(transcript) % 2)
        assert all(0 < (u.start_s or 0) < (u.end_s or 0) < detail.duration_s for u in transcript)
        assert samples is not None
        assert len(samples.turn) == len([u for u in transcript if u.role == "assistant"]) - 1
        assert all(150 <= v <= 400 for v in samples.stt)
        assert all(300 <= v <= 900 for v in samples.llm)
        assert all(100 <= v <= 300 for v in samples.tts)
        for turn, *stages in zip(samples.turn, samples.stt, samples.llm, samples.tts, strict=True):
            assert 0 < turn - sum(stages) < 100
        assert cost is not None
        parts = [cost.llm, cost.stt, cost.tts, cost.telephony, cost.platform]
        assert cost.total == round(sum(p or 0 for p in parts), 4)
        assert cost.currency == "USD"
        assert detail.recording is not None
        assert detail.recording.model_dump() == {
            "status": "available",
            "url": f"{SIM_RECORDING_BASE}/recordings/{call.call_id}.wav",
            "dual_url": f"{SIM_RECORDING_BASE}/recordings/{call.call_id}.wav?channels=2",
            "available_at": None,
            "archive": None,
        }
        assert detail.analysis is not None
        assert detail.analysis.summary
        interrupted += any(
            user.role == "user" and (user.start_s or 0) < (said.end_s or 0)
            for said, user in itertools.pairwise(transcript)
        )
    assert 0 < interrupted < len(completed)


def test_unanswered_calls_have_no_conversation() -> None:
    reasons = {
        CallStatus.no_answer: "no_answer",
        CallStatus.busy: "busy",
        CallStatus.failed: "error",
        CallStatus.canceled: "other",
    }
    unanswered = [call for call in _calls() if call.status is not CallStatus.completed]
    assert unanswered
    for call in unanswered:
        assert call.answered_at is None
        assert call.started_at < call.ringing_at < call.ended_at
        assert call.detail.transcript is None
        assert call.detail.recording is None
        assert call.detail.duration_s == 0.0
        assert call.detail.end_reason == reasons[call.status]


# ---------------------------------------------------------------- webhooks


def test_events_for_a_completed_call() -> None:
    call = _call_with(CallStatus.completed)
    assert call.answered_at is not None
    assert events_for(call, embed_detail=False) == [
        {
            "type": "call.status_changed",
            "timestamp": _iso(call.started_at),
            "data": _base_data(call, "initiated"),
        },
        {
            "type": "call.status_changed",
            "timestamp": _iso(call.ringing_at),
            "data": _base_data(call, "ringing"),
        },
        {
            "type": "call.status_changed",
            "timestamp": _iso(call.answered_at),
            "data": _base_data(call, "in_progress"),
        },
        {
            "type": "call.completed",
            "timestamp": _iso(call.ended_at),
            "data": _base_data(call, "completed"),
        },
    ]


def test_events_for_a_no_answer_call() -> None:
    call = _call_with(CallStatus.no_answer)
    events = events_for(call, embed_detail=False)
    assert [(e["type"], e["data"]["status"]) for e in events] == [
        ("call.status_changed", "initiated"),
        ("call.status_changed", "ringing"),
        ("call.completed", "no_answer"),
    ]
    assert events[-1]["timestamp"] == "2026-11-20T10:00:00.000Z"


def test_embedded_detail_round_trips() -> None:
    for status in (CallStatus.completed, CallStatus.failed):
        call = _call_with(status)
        completion = events_for(call, embed_detail=True)[-1]
        data = json.loads(json.dumps(completion["data"]))
        assert CallDetails.model_validate(data) == call.detail
        assert data["call_id"] == call.call_id


def test_signed_request_verifies() -> None:
    body = events_for(_call_with(CallStatus.busy), embed_detail=True)[-1]
    content, headers = signed_request(SECRET, body, now=1_800_000_000.7)
    assert content == json.dumps(body, separators=(",", ":")).encode()
    assert headers["content-type"] == "application/json"
    assert headers["webhook-timestamp"] == "1800000000"
    assert headers["webhook-id"].startswith("msg_")
    assert signatures.verify(SECRET, headers, content, now=1_800_000_010) == headers["webhook-id"]
    assert signed_request(SECRET, body, 0)[1]["webhook-id"] != headers["webhook-id"]


# ---------------------------------------------------------------- detail server


def test_detail_server_serves_details_recordings_and_404() -> None:
    threads_before = threading.active_count()
    call = _call_with(CallStatus.completed)
    with DetailServer() as server, httpx.Client() as client:
        server.add(call)
        assert server.detail_url == server.url + "/calls/{call_id}"
        response = client.get(server.detail_url.format(call_id=call.call_id))
        assert response.status_code == 200
        detail = CallDetails.model_validate(response.json())
        recording_url = f"{server.url}/recordings/{call.call_id}.wav"
        assert detail.recording is not None
        assert detail.recording.url == recording_url
        assert detail.model_copy(update={"recording": call.detail.recording}) == call.detail

        wav = client.get(recording_url)
        stereo = client.get(recording_url, params={"channels": "2"})
        missing = client.get(server.detail_url.format(call_id="nope"))
        assert server.requests(call.call_id) == 1
        assert server.recording_requests(call.call_id) == 2
        assert server.requests("nope") == 0
    assert wav.status_code == 200
    assert wav.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(wav.content)) as audio:
        assert (audio.getnchannels(), audio.getframerate(), audio.getnframes()) == (1, 8000, 800)
    with wave.open(io.BytesIO(stereo.content)) as audio:
        assert audio.getnchannels() == 2
    assert (missing.status_code, missing.json()) == (404, {"error": "not_found", "call_id": "nope"})
    assert threading.active_count() == threads_before


def test_detail_server_fails_then_throttles_then_answers() -> None:
    flaky, broken = _calls()[:2]
    with DetailServer() as server, httpx.Client() as client:
        server.add(flaky, fail_first=2, throttle_first=1, retry_after_s=2)
        server.add(broken, always_fail=True)
        flaky_replies = [client.get(f"{server.url}/calls/{flaky.call_id}") for _ in range(4)]
        broken_replies = [client.get(f"{server.url}/calls/{broken.call_id}") for _ in range(3)]
        assert server.requests(flaky.call_id) == 4
    assert [r.status_code for r in flaky_replies] == [500, 500, 429, 200]
    assert flaky_replies[2].headers["retry-after"] == "2"
    assert [r.status_code for r in broken_replies] == [500, 500, 500]


def test_recording_appears_after_delay_or_never() -> None:
    late, never = [c for c in _calls() if c.status is CallStatus.completed][:2]
    with DetailServer() as server, httpx.Client() as client:
        server.add(late, recording_after_s=0.3)
        server.add(never, recording_after_s=None)

        def recording(call: SimCall) -> dict[str, Any]:
            reply = client.get(f"{server.url}/calls/{call.call_id}").json()
            return dict(reply["recording"])

        assert recording(late) == {"status": "pending"}
        time.sleep(0.35)
        url = f"{server.url}/recordings/{late.call_id}.wav"
        assert recording(late) == {
            "status": "available",
            "url": url,
            "dual_url": f"{url}?channels=2",
        }
        assert recording(never) == {"status": "pending"}


def test_hanging_request_is_slow_and_does_not_block_shutdown() -> None:
    call = _calls()[0]
    results: list[float] = []
    with DetailServer() as server:
        server.add(call, hang_first_s=0.4)
        started = time.monotonic()
        assert httpx.get(f"{server.url}/calls/{call.call_id}").status_code == 200
        results.append(time.monotonic() - started)

        stuck = make_call(random.Random(999), NOW)
        server.add(stuck, hang_first_s=60)
        waiter = threading.Thread(
            target=lambda: _swallow(f"{server.url}/calls/{stuck.call_id}"), daemon=True
        )
        waiter.start()
        time.sleep(0.2)
        closing = time.monotonic()
    results.append(time.monotonic() - closing)
    waiter.join(5)
    assert not waiter.is_alive()
    assert results[0] >= 0.4
    assert results[1] < 3


def _swallow(url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(url, timeout=10)


# ---------------------------------------------------------------- runner


class _Receiver:
    """A webhook endpoint that checks signatures, keeps bodies, replies 202 (ringing: duplicate)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        content = await request.body()
        try:
            signatures.verify(SECRET, request.headers, content, time.time())
        except Unauthorized:
            return JSONResponse({"title": "bad signature"}, status_code=401)
        body = json.loads(content)
        self.bodies.append(body)
        if body["data"]["status"] == "ringing":
            return JSONResponse({"status": "duplicate"}, status_code=202)
        return JSONResponse({"status": "accepted", "events": ["evt_1"]}, status_code=202)


def test_run_simulation_posts_every_call_in_order() -> None:
    receiver = _Receiver()
    updates: list[Progress] = []
    with BackgroundServer(receiver.app) as hook, DetailServer() as details:
        progress = run_simulation(
            hook.url + "/hook",
            SECRET,
            calls=6,
            rate=30,
            seed=5,
            server=details,
            on_progress=updates.append,
            play_s=0.3,
        )
        call_ids = list(dict.fromkeys(b["data"]["call_id"] for b in receiver.bodies))
        fetched = [details.requests(call_id) for call_id in call_ids]
    sent = len(receiver.bodies)
    assert progress == Progress(
        sent=sent,
        accepted=sent - 6,
        duplicates=6,
        rejected={},
        errors=0,
        calls_started=6,
        calls_done=6,
    )
    assert len(call_ids) == 6
    assert fetched == [0] * 6
    assert updates[-1] == progress
    assert len(updates) == 6 + sent + 6
    for call_id in call_ids:
        statuses = [b["data"]["status"] for b in receiver.bodies if b["data"]["call_id"] == call_id]
        assert statuses[:2] == ["initiated", "ringing"]
        assert statuses[2:] in (["in_progress", "completed"], [statuses[-1]])
        completion = next(
            b
            for b in receiver.bodies
            if b["data"]["call_id"] == call_id and "ended_at" in b["data"]
        )
        assert completion["type"] == "call.completed"


def test_run_simulation_counts_rejections_and_connection_errors() -> None:
    receiver = _Receiver()
    with BackgroundServer(receiver.app) as hook:
        rejected = run_simulation(
            hook.url + "/hook", "whsec_wrong", calls=2, rate=50, seed=1, play_s=0.05
        )
    assert rejected.rejected == {401: rejected.sent}
    assert (rejected.accepted, rejected.errors, rejected.calls_done) == (0, 0, 2)

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = run_simulation(
        f"http://127.0.0.1:{port}/hook", SECRET, calls=2, rate=50, seed=1, play_s=0.05
    )
    assert unreachable == Progress(
        sent=rejected.sent, errors=rejected.sent, calls_started=2, calls_done=2
    )


def test_run_simulation_forever_until_stopped() -> None:
    receiver = _Receiver()
    stop = threading.Event()

    def stop_after_three(progress: Progress) -> None:
        if progress.calls_started >= 3:
            stop.set()

    with BackgroundServer(receiver.app) as hook:
        started = time.monotonic()
        progress = run_simulation(
            hook.url + "/hook",
            SECRET,
            calls=None,
            rate=20,
            embed_detail=False,
            on_progress=stop_after_three,
            stop=stop,
            play_s=5,
        )
    assert time.monotonic() - started < 3
    assert (progress.calls_started, progress.calls_done) == (3, 3)
    assert progress.sent == len(receiver.bodies)
    assert all(set(b["data"]) == set(_base_data(_calls(1)[0], "x")) for b in receiver.bodies)


def test_naive_now_is_taken_as_utc() -> None:
    naive = NOW.replace(tzinfo=None) + timedelta(microseconds=1234)
    call = make_call(random.Random(3), naive)
    assert call.ended_at == NOW + timedelta(milliseconds=1)


# ---------------------------------------------------------------- platforms


def test_every_platform_answers_under_its_name_by_its_own_call_id() -> None:
    call = _call_with(CallStatus.completed)
    with DetailServer() as server, httpx.Client() as client:
        server.add(call)
        for name, platform in PLATFORMS.items():
            base = server.api_base_url(name)
            assert base == f"{server.url}/{name}"
            for path in platform.api:
                reply = client.get(base + path.format(call_id=platform.call_id(call)))
                assert reply.status_code == 200, (name, path, reply.text)
        generic = client.get(f"{server.api_base_url('generic')}/calls/{call.call_id}").json()
        by_sim_id = client.get(f"{server.api_base_url('atoms')}/conversation/{call.call_id}")
        assert server.requests(call.call_id) == sum(len(p.api) for p in PLATFORMS.values()) + 1
        with pytest.raises(KeyError):
            server.api_base_url("nope")
    assert generic == _served_detail(call, server_url=generic["recording"]["url"])
    assert (by_sim_id.status_code, by_sim_id.json()["call_id"]) == (404, call.call_id)


def _served_detail(call: SimCall, *, server_url: str) -> dict[str, Any]:
    recording = {"status": "available", "url": server_url, "dual_url": f"{server_url}?channels=2"}
    return call.detail.model_dump(mode="json", exclude_none=True) | {"recording": recording}


def _toy_id(call: SimCall) -> str:
    return f"toy-{call.call_id[:8]}"


def _toy_call(call: SimCall, recording: Recording) -> dict[str, Any]:
    return {"id": _toy_id(call), "ready": bool(recording.url)}


def _toy_recordings(call: SimCall, recording: Recording) -> list[str]:
    return [recording.url] if recording.url else []


TOY = Platform(
    webhooks=lambda call, _: [(call.ended_at, {"id": _toy_id(call)})],
    secret_name=None,
    call_id=_toy_id,
    api={"/calls/{call_id}": _toy_call, "/calls/{call_id}/recordings": _toy_recordings},
)


def test_a_platform_plugs_in_routes_and_ids_and_gets_the_same_knobs() -> None:
    call = _call_with(CallStatus.completed)
    with DetailServer({"toy": TOY}) as server, httpx.Client() as client:
        server.add(call, fail_first=1, throttle_first=1, recording_after_s=0.3)
        base = f"{server.api_base_url('toy')}/calls/{_toy_id(call)}"
        first = [client.get(url) for url in (base, base + "/recordings") * 2]
        time.sleep(0.35)
        later = client.get(base + "/recordings").json()
        generic_route = client.get(f"{server.url}/calls/{call.call_id}")
        wav = f"{server.url}/recordings/{call.call_id}.wav"
        assert server.requests(call.call_id) == 5
    assert [reply.status_code for reply in first] == [500, 429, 200, 200]
    assert (first[2].json(), first[3].json()) == ({"id": _toy_id(call), "ready": False}, [])
    assert later == [wav]
    assert generic_route.status_code == 404


def test_a_route_must_name_the_call() -> None:
    with pytest.raises(ValueError, match="call_id"):
        Platform(webhooks=TOY.webhooks, secret_name=None, api={"/calls": lambda c, r: {}})


def test_unsigned_platforms_post_plain_json() -> None:
    content, headers = TOY.sign("", {"id": "x"}, 0.0)
    assert (content, headers) == (b'{"id":"x"}', {"content-type": "application/json"})


# ---------------------------------------------------------------- atoms


def _atoms_source(server: DetailServer) -> SourceConfig:
    return SourceConfig(
        id="src_1",
        org_id="org_1",
        name="atoms",
        provider="atoms",
        settings={"api_base_url": server.api_base_url("atoms")},
        credentials={"signing_secret": "s", "api_key": "k"},
    )


def _as_atoms_reports(call: SimCall) -> dict[str, Any]:
    """What of the call Atoms' conversation API carries, in canonical terms."""
    detail = call.detail
    samples = detail.latency_samples
    return {
        "transcript": [(u.role, u.content, u.start_s) for u in detail.transcript or []],
        "turn_latencies": samples.turn if samples else None,
        "duration_s": detail.duration_s,
        "summary": detail.analysis.summary if detail.analysis else None,
        "numbers": (call.direction, call.from_number, call.to_number),
    }


def _canonical(details: CallDetails) -> dict[str, Any]:
    samples = details.latency_samples
    return {
        "transcript": [(u.role, u.content, u.start_s) for u in details.transcript or []],
        "turn_latencies": samples.turn if samples else None,
        "duration_s": details.duration_s,
        "summary": details.analysis.summary if details.analysis else None,
        "numbers": (details.direction, details.from_number, details.to_number),
    }


def test_the_atoms_api_mapped_by_the_adapter_gives_what_the_call_carries() -> None:
    calls = _calls(40)
    assert {CallStatus.completed, CallStatus.no_answer, CallStatus.busy} <= {
        c.status for c in calls
    }
    adapter = AtomsProvider()
    with DetailServer() as server, httpx.Client() as client:
        for call in calls:
            server.add(call)
        fetched = [
            adapter.fetch(client, _atoms_source(server), FetchContext(atoms.call_id(call), None))
            for call in calls
        ]
        recordings = server.url + "/recordings"
    for call, details in zip(calls, fetched, strict=True):
        assert _canonical(details) == _as_atoms_reports(call), call.status
        assert details.agent_id == atoms.agent_id(call)
        if call.detail.end_reason in ("user_hangup", "agent_hangup", "no_answer"):
            assert details.end_reason == call.detail.end_reason
        assert details.recording is not None
        if call.answered_at is None:
            assert details.recording.url is None
        else:
            url = f"{recordings}/{call.call_id}.wav"
            assert (details.recording.url, details.recording.dual_url) == (url, f"{url}?channels=2")


def test_the_atoms_recording_is_empty_until_ready() -> None:
    call = _call_with(CallStatus.completed)
    data = atoms.conversation(call, Recording(status="pending"))["data"]
    assert (data["recordingUrl"], data["recordingDualUrl"], data["status"]) == ("", "", "completed")
    with DetailServer() as server, httpx.Client() as client:
        server.add(call, recording_after_s=None)
        details = AtomsProvider().fetch(
            client, _atoms_source(server), FetchContext(atoms.call_id(call), None)
        )
    assert details.recording == Recording(status="pending")


def test_atoms_latency_transitions_are_the_users_end_and_the_agents_reply() -> None:
    call = _call_with(CallStatus.completed)
    metrics = atoms.conversation(call, Recording())["data"]["turnLatencyMetrics"]
    assert metrics["latencies"] == call.detail.latency_samples.turn  # type: ignore[union-attr]
    for step in metrics["transitions"]:
        assert step["bot_start"] - step["user_end"] == pytest.approx(
            step["latency"] / 1000, abs=0.02
        )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Simulated recordings take up to 5 s to appear: wait longer for them than other tests."""
    return settings.model_copy(update={"recording_wait_s": 15.0})


def _source(client: TestClient, headers: dict[str, str], api: DetailServer, platform: str) -> Any:
    """A source of `platform` reading the simulated API, with the secret the simulator uses."""
    secret_name = PLATFORMS[platform].secret_name
    settings = (
        {"detail_url": api.detail_url}
        if platform == "generic"
        else {"api_base_url": api.api_base_url(platform)}
    )
    credentials = {"api_key": "sim-key"} | ({secret_name: SECRET} if secret_name else {})
    response = client.post(
        "/api/sources",
        json={
            "name": platform,
            "provider": platform,
            "settings": settings,
            "credentials": credentials,
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


TELEPHONY = {"twilio", "telnyx"}  # they carry the call, not the conversation: no transcript


def _timed_words(record: dict[str, Any]) -> bool:
    return record["transcript"][0]["start_s"] is not None and record["latency"]["turn"]["count"] > 0


# What each platform's answered calls carry beyond the common part (its API or late events).
CARRIES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "atoms": lambda r: r["latency"]["turn"]["count"] > 0,  # only the API has latencies
    "burki": lambda r: r["cost"]["currency"] == "USD",
    "origins": lambda r: r["latency"]["stt"]["count"] > 0,
    "fixa": lambda r: (
        r["metadata"]["fixa"]["url"].endswith(r["provider_call_id"])
        and r["evaluations"] is not None
        and r["latency"]["turn"]["p50"] is not None
    ),
    "twilio": lambda r: r["cost"]["currency"] == "USD",
    "telnyx": lambda r: r["quality"]["mos"] == 4.41 and r["cost"]["currency"] == "USD",
    "vapi": _timed_words,
    "retell": lambda r: _timed_words(r) and bool(r["analysis"]["summary"]),
    "bolna": lambda r: (
        r["cost"]["currency"] == "USD"
        and r["latency"]["stt"]["count"] == r["latency"]["llm"]["count"]
    ),
}


def _carries(platform: str, record: dict[str, Any]) -> bool:
    try:
        return CARRIES[platform](record)
    except (KeyError, TypeError, IndexError):  # a part still null: not there yet
        return False


@pytest.mark.parametrize("platform", list(CARRIES))
def test_simulated_calls_are_assembled_from_each_platforms_api(
    settings: Settings, runtime: Runtime, worker: None, platform: str
) -> None:
    app = create_app(settings)
    with (
        TestClient(app) as client,  # runs the lifespan
        BackgroundServer(app) as web,
        DetailServer() as api,
    ):
        key = create_org(client)
        headers = {"authorization": f"Bearer {key}"}
        source = _source(client, headers, api, platform)
        analysed = PLATFORMS[platform].analyses
        calls_source = _source(client, headers, api, analysed) if analysed else None
        played = run_simulation(
            web.url + path_of(source["webhook_url"]),
            SECRET,
            calls=6,
            rate=50,
            seed=11,
            server=api,
            play_s=0.2,
            provider=platform,
            calls_url=web.url + path_of(calls_source["webhook_url"]) if calls_source else None,
            calls_secret=SECRET,
            signed_url=source["webhook_url"],  # the public URL: Twilio signs it
        )
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            items = client.get("/api/calls", headers=headers).json()["items"]
            records = [client.get(f"/api/calls/{i['id']}", headers=headers).json() for i in items]
            done = [r for r in records if r["assembly"]["state"] == "assembled"]
            complete = all(_carries(platform, r) for r in done if r["answered_at"])
            if records and len(done) == len(records) and complete:
                break
            time.sleep(0.3)
        recordings = api.url + "/recordings/"
    assert (played.calls_done, played.rejected, played.errors) == (6, {}, 0)
    assert [r["assembly"]["state"] for r in records] == ["assembled"] * len(records)
    assert {r["provider"] for r in records} == {analysed or platform}
    answered = [r for r in records if r["answered_at"]]
    assert answered
    for record in answered:
        assert record["recording"]["status"] == "available"
        assert record["recording"]["url"].startswith(recordings)
        assert record["transcript"] or platform in TELEPHONY
        assert record["duration_s"] > 0
        assert _carries(platform, record)
    assert [r["recording"]["status"] for r in records if not r["answered_at"]] == ["none"] * (
        len(records) - len(answered)
    )
