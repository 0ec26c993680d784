"""Simulated calls: who, when, what was said, what it cost, as a platform would report."""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from callwatch.model.endings import UNANSWERED
from callwatch.model.events import CallStatus
from callwatch.model.records import (
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
    end_reason = UNANSWERED[status]
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
