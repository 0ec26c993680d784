"""A simulated voice-AI platform on the `generic` provider: calls, webhooks, detail API."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import math
import random
import secrets
import socket
import threading
import time
import uuid
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from callwatch import signatures
from callwatch.events import CallStatus
from callwatch.records import (
    Analysis,
    CallDetails,
    CallError,
    Cost,
    EndReason,
    LatencySamples,
    Recording,
    Utterance,
)

SIM_RECORDING_BASE = "https://recordings.callwatch-sim.invalid"
CALL_PLAY_S = 2.5
POST_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 10.0

_STATUS_WEIGHTS = {
    CallStatus.completed: 75,
    CallStatus.no_answer: 10,
    CallStatus.busy: 5,
    CallStatus.failed: 5,
    CallStatus.canceled: 5,
}
_COMPLETED_END_WEIGHTS: dict[EndReason, int] = {
    "user_hangup": 58,
    "agent_hangup": 37,
    "transferred": 5,
}
_END_REASON_RAW: dict[EndReason, str] = {
    "user_hangup": "customer-ended-call",
    "agent_hangup": "assistant-ended-call",
    "transferred": "assistant-forwarded-call",
    "no_answer": "customer-did-not-answer",
    "busy": "customer-busy",
    "error": "sip-503-service-unavailable",
    "other": "call-canceled-before-answer",
}
_UNANSWERED_END: dict[CallStatus, EndReason] = {
    CallStatus.no_answer: "no_answer",
    CallStatus.busy: "busy",
    CallStatus.failed: "error",
    CallStatus.canceled: "other",
}
_UNANSWERED_RING_S: dict[CallStatus, tuple[float, float]] = {
    CallStatus.no_answer: (20.0, 35.0),
    CallStatus.busy: (0.5, 2.0),
    CallStatus.failed: (0.2, 3.0),
    CallStatus.canceled: (3.0, 15.0),
}
_SENTIMENTS = ("positive", "neutral", "negative")
_INTERRUPTION_CHANCE = 0.15
_SECONDS_PER_WORD = 0.33

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Agent:
    agent_id: str
    name: str
    number: str
    directions: tuple[str, ...]
    campaigns: tuple[str, ...]
    script: tuple[tuple[str, str], ...]
    closing: tuple[str, str]
    transfer: str
    summaries: tuple[str, str]


_AGENTS = (
    _Agent(
        agent_id="sales-bot",
        name="Sales bot",
        number="+15550001111",
        directions=("outbound",),
        campaigns=("spring-promo", "renewals"),
        script=(
            (
                "Hi, this is Maya from Brightline Energy. Do you have a minute to talk about "
                "your electricity plan?",
                "Uh, sure, what is it about?",
            ),
            (
                "We have a fixed-rate plan that could lower your monthly bill by about fifteen "
                "percent.",
                "How does that compare to what I pay now?",
            ),
            (
                "If you tell me roughly what your last bill was, I can give you an estimate.",
                "It was around a hundred and twenty dollars.",
            ),
            (
                "At that usage you would save around eighteen dollars a month on the fixed plan.",
                "Is there a contract?",
            ),
            (
                "It's a twelve month plan and you can cancel any time in the first thirty days.",
                "Okay, can you send me the details by email?",
            ),
            (
                "Of course. I'll email the offer to the address on your account today.",
                "Great, thanks.",
            ),
        ),
        closing=("Thanks for your time, have a great day!", "Bye."),
        transfer="Let me transfer you to an energy advisor who can finish the switch.",
        summaries=(
            "Customer was interested in the fixed-rate plan and asked for the offer by email.",
            "Customer was not interested in switching plans.",
        ),
    ),
    _Agent(
        agent_id="support-bot",
        name="Support bot",
        number="+15550003333",
        directions=("inbound",),
        campaigns=(),
        script=(
            (
                "Thanks for calling Northwind support, how can I help you today?",
                "My internet has been dropping every few minutes since this morning.",
            ),
            (
                "Sorry to hear that. Can you confirm the phone number on the account?",
                "It's the number I'm calling from.",
            ),
            (
                "Thanks. I can see your router reconnecting often. Could you restart it for me?",
                "Okay, give me a second... it's restarting now.",
            ),
            ("While it restarts, I'll run a line test from our side.", "Sure."),
            ("The line looks healthy now. Are the lights on the router solid green?", "Yes."),
            (
                "Great, that should fix it. I've also added a note to your account.",
                "Thank you, that was quick.",
            ),
        ),
        closing=("You're welcome. Is there anything else I can help with?", "No, that's all."),
        transfer="I'll transfer you to a network technician now.",
        summaries=(
            "Customer's connection dropped; a router restart fixed it.",
            "Customer's connection problem could not be resolved on the call.",
        ),
    ),
    _Agent(
        agent_id="booking-bot",
        name="Appointment bot",
        number="+15550005555",
        directions=("outbound", "inbound"),
        campaigns=("checkup-reminders",),
        script=(
            (
                "Hello, this is the scheduling assistant at Riverside Dental. How can I help "
                "with your appointment?",
                "I need to book a check-up.",
            ),
            (
                "We have openings on Tuesday at ten or Thursday at three. Which works better?",
                "Thursday at three, please.",
            ),
            (
                "Thursday at three o'clock, got it. Can I have your date of birth to confirm?",
                "March fourth, nineteen eighty-six.",
            ),
            (
                "Thank you. You're booked for Thursday at three with Doctor Patel.",
                "Will I get a reminder?",
            ),
            ("Yes, we'll text you a reminder the day before.", "Perfect."),
        ),
        closing=("See you on Thursday. Goodbye!", "Bye, thanks."),
        transfer="Let me put you through to the front desk.",
        summaries=(
            "Check-up booked for Thursday at three with Doctor Patel.",
            "Caller did not book an appointment.",
        ),
    ),
)


@dataclass
class SimCall:
    """One simulated call: who, when, how it ended, and the canonical detail the API serves."""

    call_id: str
    agent_id: str
    agent_name: str
    campaign_id: str | None
    direction: str
    from_number: str
    to_number: str
    status: CallStatus
    started_at: datetime
    ringing_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    ring_s: float
    detail: CallDetails


# ---------------------------------------------------------------- calls


def make_call(
    rng: random.Random, now: datetime, *, recording_base: str = SIM_RECORDING_BASE
) -> SimCall:
    """A realistic call that ends at `now`; the same rng state always gives the same call."""
    ended_at = _utc_millis(now)
    agent = rng.choice(_AGENTS)
    direction = rng.choice(agent.directions)
    campaign_id = (
        rng.choice(agent.campaigns) if agent.campaigns and direction == "outbound" else None
    )
    customer = f"+1555{rng.randrange(10**7):07d}"
    from_number, to_number = (
        (agent.number, customer) if direction == "outbound" else (customer, agent.number)
    )
    call_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    status = _pick(rng, _STATUS_WEIGHTS)
    setup_s = _round_ms(rng.uniform(0.3, 1.5))
    base = CallDetails(
        agent_id=agent.agent_id,
        agent_name=agent.name,
        campaign_id=campaign_id,
        direction=direction,
        channel="phone",
        from_number=from_number,
        to_number=to_number,
        customer_number=customer,
        status=status,
        metadata={},
    )
    answered = status is CallStatus.completed
    if answered:
        detail, ring_s = _answered_detail(rng, agent, base, call_id, recording_base)
    else:
        detail, ring_s = _unanswered_detail(rng, base, status)
    talk_s = detail.duration_s or 0.0
    answered_at = ended_at - timedelta(seconds=talk_s) if answered else None
    ringing_at = ended_at - timedelta(seconds=talk_s + ring_s)
    started_at = ringing_at - timedelta(seconds=setup_s)
    detail = detail.model_copy(
        update={
            "created_at": started_at,
            "initiated_at": started_at,
            "answered_at": answered_at,
            "ended_at": ended_at,
        }
    )
    return SimCall(
        call_id=call_id,
        agent_id=agent.agent_id,
        agent_name=agent.name,
        campaign_id=campaign_id,
        direction=direction,
        from_number=from_number,
        to_number=to_number,
        status=status,
        started_at=started_at,
        ringing_at=ringing_at,
        answered_at=answered_at,
        ended_at=ended_at,
        ring_s=ring_s,
        detail=detail,
    )


def recording_url(base: str, call_id: str) -> str:
    return f"{base}/recordings/{call_id}.wav"


def _answered_detail(
    rng: random.Random, agent: _Agent, base: CallDetails, call_id: str, recording_base: str
) -> tuple[CallDetails, float]:
    ring_s = _round_ms(rng.uniform(2.0, 12.0))
    end_reason = _pick(rng, _COMPLETED_END_WEIGHTS)
    transcript, samples = _conversation(rng, agent, end_reason)
    last_end = transcript[-1].end_s or 0.0
    talk_s = _round_ms(last_end + rng.uniform(0.5, 2.0))
    success = end_reason != "transferred" and rng.random() < 0.75
    url = recording_url(recording_base, call_id)
    detail = base.model_copy(
        update={
            "end_reason": end_reason,
            "end_reason_raw": _END_REASON_RAW[end_reason],
            "duration_s": talk_s,
            "billed_duration_s": float(math.ceil(talk_s / 60) * 60),
            "ring_duration_s": ring_s,
            "recording": Recording(status="available", url=url, dual_url=f"{url}?channels=2"),
            "transcript": transcript,
            "latency_samples": samples,
            "cost": cost_of(rng, talk_s),
            "analysis": Analysis(
                summary=agent.summaries[0 if success else 1],
                success=success,
                sentiment=rng.choice(_SENTIMENTS[:2] if success else _SENTIMENTS[1:]),
            ),
        }
    )
    return detail, ring_s


def _unanswered_detail(
    rng: random.Random, base: CallDetails, status: CallStatus
) -> tuple[CallDetails, float]:
    low, high = _UNANSWERED_RING_S[status]
    ring_s = _round_ms(rng.uniform(low, high))
    end_reason = _UNANSWERED_END[status]
    errors = (
        [CallError(type="sip_error", description="SIP 503 Service Unavailable")]
        if status is CallStatus.failed
        else None
    )
    detail = base.model_copy(
        update={
            "end_reason": end_reason,
            "end_reason_raw": _END_REASON_RAW[end_reason],
            "duration_s": 0.0,
            "billed_duration_s": 0.0,
            "ring_duration_s": ring_s,
            "cost": Cost(total=0.0, currency="USD"),
            "errors": errors,
        }
    )
    return detail, ring_s


def _conversation(
    rng: random.Random, agent: _Agent, end_reason: EndReason
) -> tuple[list[Utterance], LatencySamples]:
    """Alternating utterances timed from answer; each assistant reply follows one latency sample."""
    exchanges = list(agent.script[: rng.randint(2, len(agent.script))])
    if end_reason == "transferred":
        exchanges.append((agent.transfer, ""))
    elif end_reason == "agent_hangup":
        exchanges.append((agent.closing[0], ""))
    else:
        exchanges.append(agent.closing)
    transcript: list[Utterance] = []
    samples = LatencySamples()
    start = rng.uniform(0.4, 1.2)
    for index, (said, reply) in enumerate(exchanges):
        if index:
            start = _add_latency_sample(rng, samples, after=transcript[-1].end_s or 0.0)
        said_end = start + _speaking_s(rng, said)
        transcript.append(_utterance("assistant", said, start, said_end))
        if reply:
            reply_start = _reply_start(rng, start, said_end)
            transcript.append(
                _utterance("user", reply, reply_start, reply_start + _speaking_s(rng, reply))
            )
    return transcript, samples


def _add_latency_sample(rng: random.Random, samples: LatencySamples, *, after: float) -> float:
    """Record one turn's stt/llm/tts/turn milliseconds; return when the assistant starts."""
    stt = round(rng.uniform(150, 400), 1)
    llm = round(rng.uniform(300, 900), 1)
    tts = round(rng.uniform(100, 300), 1)
    turn = round(stt + llm + tts + rng.uniform(10, 80), 1)
    samples.stt.append(stt)
    samples.llm.append(llm)
    samples.tts.append(tts)
    samples.turn.append(turn)
    return after + turn / 1000


def _reply_start(rng: random.Random, said_start: float, said_end: float) -> float:
    """Usually a pause after the assistant; sometimes the user talks over it (an interruption)."""
    if said_end - said_start > 1.5 and rng.random() < _INTERRUPTION_CHANCE:
        return said_end - rng.uniform(0.3, 1.0)
    return said_end + rng.uniform(0.3, 1.2)


def _speaking_s(rng: random.Random, text: str) -> float:
    return len(text.split()) * _SECONDS_PER_WORD + rng.uniform(0.2, 0.6)


def _utterance(role: str, content: str, start: float, end: float) -> Utterance:
    return Utterance.model_validate(
        {"role": role, "content": content, "start_s": round(start, 2), "end_s": round(end, 2)}
    )


def cost_of(rng: random.Random, talk_s: float, currency: str = "USD") -> Cost:
    """Per-minute component prices, as a platform would bill them."""
    minutes = talk_s / 60
    parts = {
        "llm": round(rng.uniform(0.02, 0.06) * minutes, 4),
        "stt": round(0.01 * minutes, 4),
        "tts": round(rng.uniform(0.03, 0.05) * minutes, 4),
        "telephony": round(0.014 * math.ceil(minutes), 4),
        "platform": round(0.05 * minutes, 4),
    }
    total = round(sum(parts.values()), 4)
    per_minute = round(total / minutes, 4) if minutes else None
    return Cost(total=total, currency=currency, per_minute=per_minute, **parts)


def _pick(rng: random.Random, weights: dict[_T, int]) -> _T:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _round_ms(seconds: float) -> float:
    return round(seconds, 3)


def _utc_millis(moment: datetime) -> datetime:
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.replace(microsecond=aware.microsecond // 1000 * 1000)


# ---------------------------------------------------------------- webhooks


def events_for(call: SimCall, *, embed_detail: bool) -> list[dict[str, Any]]:
    """The call's generic-provider webhook bodies in sending order (DESIGN §5)."""
    steps = _status_steps(call)
    events = [_event("call.status_changed", call, status, at) for status, at in steps[:-1]]
    final_status, ended_at = steps[-1]
    completion = _event("call.completed", call, final_status, ended_at)
    if embed_detail:
        completion["data"] |= call.detail.model_dump(mode="json", exclude_none=True)
    return [*events, completion]


def signed_request(secret: str, body: dict[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
    """Compact JSON bytes plus content-type and Standard Webhooks headers for `body`."""
    content = json.dumps(body, separators=(",", ":")).encode()
    msg_id = f"msg_{secrets.token_hex(12)}"
    headers = {"content-type": "application/json"}
    headers |= signatures.headers(secret, msg_id, int(now), content)
    return content, headers


def _status_steps(call: SimCall) -> list[tuple[CallStatus, datetime]]:
    steps = [(CallStatus.initiated, call.started_at), (CallStatus.ringing, call.ringing_at)]
    if call.answered_at is not None:
        steps.append((CallStatus.in_progress, call.answered_at))
    steps.append((call.status, call.ended_at))
    return steps


def _event(kind: str, call: SimCall, status: CallStatus, at: datetime) -> dict[str, Any]:
    return {
        "type": kind,
        "timestamp": _iso(at),
        "data": {
            "call_id": call.call_id,
            "status": status.value,
            "agent_id": call.agent_id,
            "agent_name": call.agent_name,
            "direction": call.direction,
            "from_number": call.from_number,
            "to_number": call.to_number,
            "campaign_id": call.campaign_id,
            "metadata": {},
        },
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- servers


class BackgroundServer:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (free port) in a thread; a context manager."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._closing = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("server is not running; use it as a context manager")
        return self._url

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"sim-server-{port}", daemon=True
        )
        self._server, self._thread = server, thread
        self._url = f"http://127.0.0.1:{port}"
        self._closing.clear()
        thread.start()
        self._wait_started(sock)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._closing.set()
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join()
        self._server = self._thread = self._url = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def pause(self, seconds: float) -> None:
        """Sleep inside a request, cut short when the server is stopping."""
        deadline = time.monotonic() + seconds
        while not self._closing.is_set() and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(0.05, left))

    def _wait_started(self, sock: socket.socket) -> None:
        assert self._server is not None
        assert self._thread is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError("simulator server did not start")
            time.sleep(0.01)


@dataclass
class _Registered:
    call: SimCall
    fail_first: int
    always_fail: bool
    throttle_first: int
    retry_after_s: float
    recording_ready_at: float | None
    hang_first_s: float
    detail_requests: int = 0
    recording_requests: int = 0


class DetailServer(BackgroundServer):
    """The platform's call-detail API and recording host, with per-call failure knobs."""

    def __init__(self) -> None:
        self._calls: dict[str, _Registered] = {}
        self._lock = threading.Lock()
        routes = [
            Route("/calls/{call_id}", self._detail),
            Route("/recordings/{call_id}.wav", self._recording),
        ]
        super().__init__(Starlette(routes=routes))

    @property
    def detail_url(self) -> str:
        """The template callwatch's generic source takes as `settings.detail_url`."""
        return self.url + "/calls/{call_id}"

    def add(
        self,
        call: SimCall,
        *,
        fail_first: int = 0,
        always_fail: bool = False,
        throttle_first: int = 0,
        retry_after_s: float = 1,
        recording_after_s: float | None = 0,
        hang_first_s: float = 0,
    ) -> None:
        """Serve `call`: the first requests hang/fail/throttle in that order, as configured."""
        ready_at = None if recording_after_s is None else time.monotonic() + recording_after_s
        entry = _Registered(
            call, fail_first, always_fail, throttle_first, retry_after_s, ready_at, hang_first_s
        )
        with self._lock:
            self._calls[call.call_id] = entry

    def requests(self, call_id: str) -> int:
        """Detail requests received for `call_id` (whatever was answered)."""
        with self._lock:
            entry = self._calls.get(call_id)
            return entry.detail_requests if entry else 0

    def recording_requests(self, call_id: str) -> int:
        with self._lock:
            entry = self._calls.get(call_id)
            return entry.recording_requests if entry else 0

    async def _detail(self, request: Request) -> Response:
        call_id = request.path_params["call_id"]
        with self._lock:
            entry = self._calls.get(call_id)
            if entry is None:
                return _not_found(call_id)
            index = entry.detail_requests
            entry.detail_requests += 1
        if index == 0 and entry.hang_first_s > 0:
            await self.pause(entry.hang_first_s)
        if entry.always_fail or index < entry.fail_first:
            return JSONResponse({"error": "internal_error"}, status_code=500)
        if index < entry.fail_first + entry.throttle_first:
            retry_after = {"Retry-After": f"{entry.retry_after_s:g}"}
            return JSONResponse({"error": "rate_limited"}, status_code=429, headers=retry_after)
        return JSONResponse(self._detail_json(entry))

    async def _recording(self, request: Request) -> Response:
        call_id = request.path_params["call_id"]
        with self._lock:
            entry = self._calls.get(call_id)
            if entry is None:
                return _not_found(call_id)
            entry.recording_requests += 1
        channels = 2 if request.query_params.get("channels") == "2" else 1
        return Response(silence_wav(channels=channels), media_type="audio/wav")

    def _detail_json(self, entry: _Registered) -> dict[str, Any]:
        detail = entry.call.detail
        if detail.recording is not None:
            ready = entry.recording_ready_at
            if ready is not None and time.monotonic() >= ready:
                url = recording_url(self.url, entry.call.call_id)
                recording = _with_url(detail.recording, url)
            else:
                recording = Recording(status="pending")
            detail = detail.model_copy(update={"recording": recording})
        return detail.model_dump(mode="json", exclude_none=True)


def _with_url(recording: Recording, url: str) -> Recording:
    return recording.model_copy(update={"url": url, "dual_url": f"{url}?channels=2"})


def _not_found(call_id: str) -> Response:
    return JSONResponse({"error": "not_found", "call_id": call_id}, status_code=404)


@cache
def silence_wav(seconds: float = 0.1, *, channels: int = 1, rate: int = 8000) -> bytes:
    """A valid 16-bit PCM WAV file of silence."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * channels * round(rate * seconds))
    return buffer.getvalue()


# ---------------------------------------------------------------- runner


@dataclass
class Progress:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    calls_started: int = 0
    calls_done: int = 0

    def snapshot(self) -> Progress:
        return replace(self, rejected=dict(self.rejected))


class _Tracker:
    """Thread-safe Progress; reports every change to `on_progress`, one at a time."""

    def __init__(self, on_progress: Callable[[Progress], None] | None) -> None:
        self._progress = Progress()
        self._lock = threading.Lock()
        self._on_progress = on_progress
        self.failure: Exception | None = None

    def update(self, change: Callable[[Progress], None]) -> None:
        with self._lock:
            change(self._progress)
            if self._on_progress is not None:
                self._on_progress(self._progress.snapshot())

    def snapshot(self) -> Progress:
        with self._lock:
            return self._progress.snapshot()

    def fail(self, exc: Exception) -> None:
        with self._lock:
            self.failure = self.failure or exc


def run_simulation(
    url: str,
    secret: str,
    *,
    calls: int | None,
    rate: float,
    seed: int | None = None,
    embed_detail: bool = True,
    server: DetailServer | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    play_s: float = CALL_PLAY_S,
) -> Progress:
    """Start `calls` calls (None: until `stop` is set) at `rate` per second and post their events.

    Each call's events are posted in order over about `play_s` seconds; calls overlap. Returns
    once every started call has finished posting.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    if calls is not None and calls < 0:
        raise ValueError("calls must not be negative")
    stop = stop if stop is not None else threading.Event()
    tracker = _Tracker(on_progress)
    workers = max(2, min(32, math.ceil(rate * (play_s + 1))))
    slots = threading.BoundedSemaphore(workers)
    master = random.Random(seed)
    with (
        httpx.Client(timeout=POST_TIMEOUT_S) as client,
        ThreadPoolExecutor(workers, thread_name_prefix="callwatch-sim") as pool,
    ):
        player = _Player(url, secret, client, server, embed_detail, play_s, tracker, stop)
        try:
            _schedule(pool, slots, player, master, calls, rate, stop)
        except BaseException:
            stop.set()
            raise
    if tracker.failure is not None:
        raise tracker.failure
    return tracker.snapshot()


def _schedule(
    pool: ThreadPoolExecutor,
    slots: threading.BoundedSemaphore,
    player: _Player,
    master: random.Random,
    calls: int | None,
    rate: float,
    stop: threading.Event,
) -> None:
    began = time.monotonic()
    for index in _indices(calls):
        if stop.wait(max(0.0, began + index / rate - time.monotonic())):
            return
        if player.tracker.failure is not None:
            return
        while not slots.acquire(timeout=0.1):
            if stop.is_set():
                return
        player.tracker.update(_call_started)
        future = pool.submit(player.play, master.getrandbits(64))
        future.add_done_callback(lambda _: slots.release())


def _indices(limit: int | None) -> Iterator[int]:
    index = 0
    while limit is None or index < limit:
        yield index
        index += 1


@dataclass
class _Player:
    url: str
    secret: str
    client: httpx.Client
    server: DetailServer | None
    embed_detail: bool
    play_s: float
    tracker: _Tracker
    stop: threading.Event

    def play(self, call_seed: int) -> None:
        try:
            rng = random.Random(call_seed)
            base = self.server.url if self.server is not None else SIM_RECORDING_BASE
            call = make_call(rng, datetime.now(UTC), recording_base=base)
            if self.server is not None:
                fail_first = 1 if rng.random() < 0.05 else 0
                self.server.add(call, recording_after_s=rng.uniform(1, 5), fail_first=fail_first)
            events = events_for(call, embed_detail=self.embed_detail)
            for pause, body in zip(play_gaps(call, self.play_s), events, strict=True):
                self.stop.wait(pause)
                self._post(body)
            self.tracker.update(_call_done)
        except Exception as exc:
            self.tracker.fail(exc)

    def _post(self, body: dict[str, Any]) -> None:
        content, headers = signed_request(self.secret, body, time.time())
        try:
            response = self.client.post(self.url, content=content, headers=headers)
        except httpx.HTTPError:
            self.tracker.update(_connection_error)
            return
        self.tracker.update(lambda progress: _record_response(progress, response))


def play_gaps(call: SimCall, play_s: float) -> list[float]:
    """Seconds to wait before each event: the call's real gaps squeezed into about `play_s`."""
    moments = [at for _, at in _status_steps(call)]
    real = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(moments)]
    total = sum(real) or 1.0
    return [0.0] + [play_s * (0.25 / len(real) + 0.75 * gap / total) for gap in real]


def _record_response(progress: Progress, response: httpx.Response) -> None:
    progress.sent += 1
    if not response.is_success:
        progress.rejected[response.status_code] = progress.rejected.get(response.status_code, 0) + 1
    elif _is_duplicate(response):
        progress.duplicates += 1
    else:
        progress.accepted += 1


def _is_duplicate(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("status") == "duplicate"


def _connection_error(progress: Progress) -> None:
    progress.sent += 1
    progress.errors += 1


def _call_started(progress: Progress) -> None:
    progress.calls_started += 1


def _call_done(progress: Progress) -> None:
    progress.calls_done += 1
