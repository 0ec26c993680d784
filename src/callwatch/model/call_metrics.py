"""Pure derivation of call metrics (latency, interruptions, turns, durations, cost) from details."""

import math
from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise

from callwatch.model.events import TERMINAL_STATUSES
from callwatch.model.records import (
    MAX_MAGNITUDE,
    CallDetails,
    Cost,
    Interruption,
    Interruptions,
    Latency,
    LatencySamples,
    Metrics,
    Stats,
    Turns,
    Utterance,
)


def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of ascending samples, interpolated like numpy's default."""
    if not sorted_samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside [0, 100]")
    position = (len(sorted_samples) - 1) * (q / 100)
    below = math.floor(position)
    above = min(below + 1, len(sorted_samples) - 1)
    return _lerp(sorted_samples[below], sorted_samples[above], position - below)


def _lerp(low: float, high: float, fraction: float) -> float:
    # numpy's formula, which stays exact at both ends.
    gap = high - low
    return high - gap * (1 - fraction) if fraction >= 0.5 else low + gap * fraction


def stats(samples: Sequence[float]) -> Stats | None:
    """Summary statistics of samples (any order), or None when there are none."""
    if not samples:
        return None
    ordered = sorted(samples)
    return Stats(
        count=len(ordered),
        mean=round(math.fsum(ordered) / len(ordered), 2),
        p50=round(percentile(ordered, 50), 2),
        p90=round(percentile(ordered, 90), 2),
        p95=round(percentile(ordered, 95), 2),
        p99=round(percentile(ordered, 99), 2),
        min=round(ordered[0], 2),
        max=round(ordered[-1], 2),
    )


def compute(details: CallDetails, *, ringing_at: datetime | None = None) -> Metrics:
    """Metrics for a call, preferring what the platform reported over what can be derived."""
    duration_s = _duration_s(details)
    return Metrics(
        duration_s=duration_s,
        billed_duration_s=details.billed_duration_s,
        ring_duration_s=_ring_duration_s(details, ringing_at),
        latency=_latency(details),
        interruptions=_interruptions(details),
        turns=_turns(details),
        cost=_cost(details.cost, duration_s),
    )


def _latency(details: CallDetails) -> Latency:
    summary = details.latency or Latency()
    samples = details.latency_samples or LatencySamples()
    turn = _stage(samples.turn, summary.turn)
    if turn is None and details.transcript:
        turn = stats(_turn_latency_samples(details.transcript))
    time_to_first_word_ms = summary.time_to_first_word_ms
    if time_to_first_word_ms is None and details.transcript:
        time_to_first_word_ms = _time_to_first_word_ms(details.transcript)
    return Latency(
        turn=turn,
        stt=_stage(samples.stt, summary.stt),
        llm=_stage(samples.llm, summary.llm),
        tts=_stage(samples.tts, summary.tts),
        time_to_first_word_ms=time_to_first_word_ms,
    )


def _stage(samples: Sequence[float], summary: Stats | None) -> Stats | None:
    from_samples = stats(samples)
    return from_samples if from_samples is not None else summary


def _turn_latency_samples(transcript: Sequence[Utterance]) -> list[float]:
    return [gap for gap in turn_latencies(transcript) if gap is not None]


def turn_latencies(transcript: Sequence[Utterance]) -> list[float | None]:
    """Per utterance, the ms from the user's end to this assistant reply's start (None for
    any other utterance, or where a time is missing or the reply overlapped)."""
    gaps: list[float | None] = [None] * len(transcript)
    for index, (before, reply) in enumerate(pairwise(transcript), start=1):
        if before.role != "user" or reply.role != "assistant":
            continue
        if before.end_s is not None and reply.start_s is not None:
            gap_ms = (reply.start_s - before.end_s) * 1000
            if gap_ms >= 0:
                gaps[index] = gap_ms
    return gaps


def _time_to_first_word_ms(transcript: Sequence[Utterance]) -> float | None:
    first = next((u for u in transcript if u.role == "assistant"), None)
    if first is None or first.start_s is None:
        return None
    return round(first.start_s * 1000, 2)


def _interruptions(details: CallDetails) -> Interruptions | None:
    if details.interruptions is not None:
        return details.interruptions
    transcript = details.transcript
    if transcript is None or not _is_timed(transcript):
        return None
    items = [
        Interruption(
            at_s=user.start_s,
            duration_s=round(agent.end_s - user.start_s, 3),
            text=user.content,
        )
        for agent, user in _adjacent(transcript, "assistant", "user")
        if agent.end_s is not None and user.start_s is not None and user.start_s < agent.end_s
    ]
    return Interruptions(count=len(items), items=items)


def _turns(details: CallDetails) -> Turns | None:
    if details.turns is not None:
        return details.turns
    transcript = details.transcript
    if transcript is None:
        return None
    return Turns(
        count=sum(1 for u in transcript if u.role in ("user", "assistant")),
        user_talk_s=_talk_s(transcript, "user"),
        agent_talk_s=_talk_s(transcript, "assistant"),
    )


def _talk_s(transcript: Sequence[Utterance], role: str) -> float | None:
    spans = [
        u.end_s - u.start_s
        for u in transcript
        if u.role == role and u.start_s is not None and u.end_s is not None
    ]
    return round(math.fsum(spans), 3) if spans else None


def _adjacent(
    transcript: Sequence[Utterance], first_role: str, second_role: str
) -> list[tuple[Utterance, Utterance]]:
    return [
        (first, second)
        for first, second in pairwise(transcript)
        if first.role == first_role and second.role == second_role
    ]


def _is_timed(transcript: Sequence[Utterance]) -> bool:
    """True unless the transcript has utterances and none carries a timing."""
    return not transcript or any(u.start_s is not None or u.end_s is not None for u in transcript)


def _duration_s(details: CallDetails) -> float | None:
    if details.duration_s is not None:
        return details.duration_s
    if details.answered_at is not None and details.ended_at is not None:
        return _seconds_between(details.answered_at, details.ended_at)
    never_answered = details.answered_at is None and details.ended_at is not None
    if details.status in TERMINAL_STATUSES and never_answered:
        return 0.0
    return None


def _ring_duration_s(details: CallDetails, ringing_at: datetime | None) -> float | None:
    if details.ring_duration_s is not None:
        return details.ring_duration_s
    ring_end = details.answered_at or details.ended_at
    if ringing_at is None or ring_end is None:
        return None
    return _seconds_between(ringing_at, ring_end)


def _seconds_between(start: datetime, end: datetime) -> float | None:
    """Seconds from start to end, rounded to milliseconds; None if end precedes start."""
    seconds = (end - start).total_seconds()
    return round(seconds, 3) if seconds >= 0 else None


def _cost(given: Cost | None, duration_s: float | None) -> Cost | None:
    if given is None:
        return None
    components = [given.llm, given.stt, given.tts, given.telephony, given.platform]
    known = [value for value in components if value is not None]
    total = given.total if given.total is not None else (math.fsum(known) if known else None)
    total = _money(total)
    per_minute = None
    if total is not None and duration_s is not None and duration_s > 0:
        per_minute = round(total / (duration_s / 60), 4)
        if abs(per_minute) > MAX_MAGNITUDE:  # a price over a split second: not a rate
            per_minute = None
    return Cost(
        total=total,
        currency=given.currency,
        llm=_money(given.llm),
        stt=_money(given.stt),
        tts=_money(given.tts),
        telephony=_money(given.telephony),
        platform=_money(given.platform),
        per_minute=per_minute,
    )


def _money(value: float | None) -> float | None:
    return round(value, 6) if value is not None else None
