"""Tests for the pure metrics module: percentiles, stats and everything compute() derives."""

from datetime import UTC, datetime, timedelta

import pytest

from callwatch.model.call_metrics import compute, percentile, stats, turn_latencies
from callwatch.model.events import CallStatus
from callwatch.model.records import (
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

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
FOUR_SAMPLE_STATS = Stats(
    count=4, mean=250.0, p50=250.0, p90=370.0, p95=385.0, p99=397.0, min=100.0, max=400.0
)
PLATFORM_TURN = Stats(count=9, mean=900.0, p50=850.0, p90=1400.0, p95=1600.0, p99=1900.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def said(
    role: str, content: str = "...", start: float | None = None, end: float | None = None
) -> Utterance:
    return Utterance.model_validate(
        {"role": role, "content": content, "start_s": start, "end_s": end}
    )


def one_sample(value: float) -> Stats:
    """Stats of a single sample: every figure is that sample."""
    return Stats(
        count=1, mean=value, p50=value, p90=value, p95=value, p99=value, min=value, max=value
    )


def metrics(**fields: object) -> Metrics:
    """Expected Metrics: everything unknown unless given."""
    return Metrics.model_validate({"latency": Latency(), **fields})


# percentile


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 100.0), (25, 175.0), (50, 250.0), (90, 370.0), (95, 385.0), (99, 397.0), (100, 400.0)],
)
def test_percentile_interpolates_linearly_between_closest_ranks(q: float, expected: float) -> None:
    assert percentile([100, 200, 300, 400], q) == pytest.approx(expected, abs=1e-9)


def test_percentile_hits_a_rank_exactly() -> None:
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0


def test_percentile_of_ten_samples() -> None:
    samples = [100.0 * n for n in range(1, 11)]
    results = [percentile(samples, q) for q in (50, 90, 95, 99)]
    assert results == pytest.approx([550.0, 910.0, 955.0, 991.0], abs=1e-9)


@pytest.mark.parametrize("q", [0, 37.5, 50, 99, 100])
def test_percentile_of_single_sample_is_that_sample(q: float) -> None:
    assert percentile([42.0], q) == 42.0


def test_percentile_of_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


@pytest.mark.parametrize("q", [-0.1, 100.1])
def test_percentile_outside_0_to_100_is_an_error(q: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0, 2.0], q)


# stats


def test_stats_of_unsorted_samples() -> None:
    assert stats([400, 100, 300, 200]) == FOUR_SAMPLE_STATS


def test_stats_of_single_sample() -> None:
    assert stats([812.5]) == one_sample(812.5)


def test_stats_of_no_samples_is_none() -> None:
    assert stats([]) is None


def test_stats_round_to_two_decimals() -> None:
    assert stats([5.678, 1.234]) == Stats(
        count=2, mean=3.46, p50=3.46, p90=5.23, p95=5.46, p99=5.63, min=1.23, max=5.68
    )


# compute: nothing known


def test_compute_with_nothing_known_invents_nothing() -> None:
    assert compute(CallDetails()) == metrics()


# compute: latency


def test_latency_samples_beat_platform_summary_and_transcript() -> None:
    details = CallDetails(
        latency_samples=LatencySamples(turn=[400, 100, 300, 200]),
        latency=Latency(turn=PLATFORM_TURN),
        transcript=[said("user", start=0.0, end=1.0), said("assistant", start=1.5, end=2.0)],
    )
    assert compute(details).latency == Latency(turn=FOUR_SAMPLE_STATS, time_to_first_word_ms=1500.0)


def test_platform_summary_used_for_stages_without_samples() -> None:
    llm_summary = Stats(count=3, mean=450.0)
    details = CallDetails(
        latency_samples=LatencySamples(tts=[100, 200, 300, 400]),
        latency=Latency(turn=PLATFORM_TURN, llm=llm_summary, tts=Stats(mean=1.0)),
        transcript=[said("user", start=0.0, end=1.0), said("assistant", start=1.5, end=2.0)],
    )
    assert compute(details).latency == Latency(
        turn=PLATFORM_TURN, llm=llm_summary, tts=FOUR_SAMPLE_STATS, time_to_first_word_ms=1500.0
    )


def test_each_stage_comes_from_its_own_samples() -> None:
    details = CallDetails(latency_samples=LatencySamples(stt=[50], llm=[700], tts=[120]))
    assert compute(details).latency == Latency(
        stt=one_sample(50.0),
        llm=one_sample(700.0),
        tts=one_sample(120.0),
    )


def test_turn_latency_derived_from_transcript_ignores_overlaps_and_missing_timings() -> None:
    transcript = [
        said("assistant", start=0.0, end=1.0),
        said("user", start=1.5, end=3.0),
        said("assistant", start=3.8, end=5.0),  # 800 ms
        said("user", start=5.5, end=7.0),
        said("assistant", start=6.5, end=8.0),  # overlap: -500 ms, not a latency
        said("user", start=8.5, end=9.0),
        said("assistant"),  # untimed
        said("user", start=10.0),  # end unknown
        said("assistant", start=10.9, end=11.0),
        said("user", start=12.0, end=12.5),
        said("assistant", start=13.7, end=14.0),  # 1200 ms
    ]
    assert compute(CallDetails(transcript=transcript)).latency.turn == Stats(
        count=2, mean=1000.0, p50=1000.0, p90=1160.0, p95=1180.0, p99=1196.0, min=800.0, max=1200.0
    )


def test_turn_latency_counts_a_reply_at_the_exact_end_of_the_user_as_zero() -> None:
    transcript = [said("user", start=0.0, end=2.0), said("assistant", start=2.0, end=3.0)]
    assert compute(CallDetails(transcript=transcript)).latency.turn == one_sample(0.0)


def test_turn_latency_needs_the_assistant_directly_after_the_user() -> None:
    transcript = [
        said("user", start=0.0, end=1.0),
        said("tool", start=1.1, end=1.2),
        said("assistant", start=2.0, end=3.0),
        said("user", start=4.0, end=5.0),
        said("user", start=5.5, end=6.0),
        said("assistant", start=6.25, end=7.0),  # only the second user counts: 250 ms
    ]
    assert compute(CallDetails(transcript=transcript)).latency.turn == one_sample(250.0)


def test_no_turn_latency_when_every_reply_overlaps() -> None:
    transcript = [said("user", start=0.0, end=2.0), said("assistant", start=1.5, end=3.0)]
    assert compute(CallDetails(transcript=transcript)).latency.turn is None


def test_empty_latency_samples_fall_back_to_transcript() -> None:
    details = CallDetails(
        latency_samples=LatencySamples(),
        latency=Latency(),
        transcript=[said("user", start=0.0, end=1.0), said("assistant", start=1.5, end=2.0)],
    )
    assert compute(details).latency.turn == one_sample(500.0)


# compute: time to first word


def test_time_to_first_word_from_platform_wins() -> None:
    details = CallDetails(
        latency=Latency(time_to_first_word_ms=820.0),
        transcript=[said("assistant", start=2.0, end=3.0)],
    )
    assert compute(details).latency == Latency(time_to_first_word_ms=820.0)


def test_time_to_first_word_from_first_assistant_utterance() -> None:
    transcript = [
        said("system", start=0.0, end=0.0),
        said("user", start=0.1, end=0.3),
        said("assistant", start=0.8234, end=1.5),
        said("assistant", start=2.0, end=3.0),
    ]
    assert compute(CallDetails(transcript=transcript)).latency.time_to_first_word_ms == 823.4


def test_time_to_first_word_unknown_when_first_assistant_utterance_is_untimed() -> None:
    transcript = [said("assistant"), said("assistant", start=2.0, end=3.0)]
    assert compute(CallDetails(transcript=transcript)).latency.time_to_first_word_ms is None


def test_time_to_first_word_unknown_without_assistant_speech() -> None:
    transcript = [said("user", start=0.5, end=1.0)]
    assert compute(CallDetails(transcript=transcript)).latency.time_to_first_word_ms is None


# compute: interruptions


def test_interruptions_derived_from_timed_transcript() -> None:
    transcript = [
        said("assistant", start=0.0, end=4.0),
        said("user", "wait", start=3.2, end=5.0),  # interrupts 0.8 s before the end
        said("assistant", start=6.0, end=8.0),
        said("user", "ok", start=8.0, end=9.0),  # starts exactly at the end: no interruption
        said("assistant", start=10.0, end=12.5),
        said("user", "no no", start=11.25, end=13.0),
    ]
    assert compute(CallDetails(transcript=transcript)).interruptions == Interruptions(
        count=2,
        items=[
            Interruption(at_s=3.2, duration_s=0.8, text="wait"),
            Interruption(at_s=11.25, duration_s=1.25, text="no no"),
        ],
    )


def test_interruption_needs_the_user_directly_after_the_assistant() -> None:
    transcript = [
        said("assistant", start=0.0, end=4.0),
        said("tool", start=1.0, end=1.5),
        said("user", "hm", start=3.0, end=5.0),
    ]
    assert compute(CallDetails(transcript=transcript)).interruptions == Interruptions(count=0)


def test_transcript_without_interruptions_counts_zero() -> None:
    transcript = [said("assistant", start=0.0, end=1.0), said("user", start=1.5, end=2.0)]
    assert compute(CallDetails(transcript=transcript)).interruptions == Interruptions(
        count=0, items=[]
    )


def test_empty_transcript_counts_zero_interruptions() -> None:
    assert compute(CallDetails(transcript=[])).interruptions == Interruptions(count=0, items=[])


def test_interruptions_unknown_without_transcript() -> None:
    assert compute(CallDetails()).interruptions is None


def test_interruptions_unknown_when_transcript_has_no_timings() -> None:
    transcript = [said("assistant", "hi"), said("user", "hello")]
    assert compute(CallDetails(transcript=transcript)).interruptions is None


def test_interruptions_from_platform_win() -> None:
    given = Interruptions(count=3, items=[Interruption(at_s=31.0)])
    transcript = [said("assistant", start=0.0, end=4.0), said("user", start=3.0, end=5.0)]
    details = CallDetails(interruptions=given, transcript=transcript)
    assert compute(details).interruptions == given


# compute: turns


def test_turns_derived_from_transcript() -> None:
    transcript = [
        said("system", start=0.0, end=0.0),
        said("assistant", start=0.4, end=1.1),
        said("user", start=1.5, end=3.0),
        said("tool", start=3.1, end=3.2),
        said("assistant", start=3.5, end=6.0001),
        said("user"),  # counted, but no timing to add
        said("user", start=7.0, end=7.25),
    ]
    assert compute(CallDetails(transcript=transcript)).turns == Turns(
        count=5, user_talk_s=1.75, agent_talk_s=3.2
    )


def test_turns_talk_time_unknown_for_untimed_role() -> None:
    transcript = [said("assistant", start=0.0, end=2.5), said("user")]
    assert compute(CallDetails(transcript=transcript)).turns == Turns(
        count=2, user_talk_s=None, agent_talk_s=2.5
    )


def test_turns_of_empty_transcript() -> None:
    assert compute(CallDetails(transcript=[])).turns == Turns(count=0)


def test_turns_unknown_without_transcript() -> None:
    assert compute(CallDetails()).turns is None


def test_turns_from_platform_win() -> None:
    given = Turns(count=22, user_talk_s=40.1, agent_talk_s=61.3)
    details = CallDetails(turns=given, transcript=[said("user", start=0.0, end=1.0)])
    assert compute(details).turns == given


# compute: durations


def test_given_durations_win() -> None:
    details = CallDetails(
        duration_s=130.0,
        billed_duration_s=180.0,
        ring_duration_s=4.2,
        answered_at=at(10),
        ended_at=at(100),
    )
    assert compute(details, ringing_at=at(0)) == metrics(
        duration_s=130.0, billed_duration_s=180.0, ring_duration_s=4.2
    )


def test_duration_from_answer_to_end() -> None:
    details = CallDetails(status=CallStatus.completed, answered_at=at(4.2), ended_at=at(134.7004))
    assert compute(details) == metrics(duration_s=130.5)


@pytest.mark.parametrize(
    "status", [CallStatus.no_answer, CallStatus.busy, CallStatus.failed, CallStatus.canceled]
)
def test_duration_of_terminal_unanswered_call_is_zero(status: CallStatus) -> None:
    assert compute(CallDetails(status=status, ended_at=at(30))) == metrics(duration_s=0.0)


def test_duration_unknown_for_unanswered_call_still_going() -> None:
    details = CallDetails(status=CallStatus.ringing, ended_at=at(30))
    assert compute(details) == metrics()


def test_duration_unknown_for_terminal_call_without_end_time() -> None:
    assert compute(CallDetails(status=CallStatus.no_answer)) == metrics()


def test_duration_unknown_for_answered_call_without_end_time() -> None:
    details = CallDetails(status=CallStatus.completed, answered_at=at(5))
    assert compute(details) == metrics()


def test_duration_unknown_when_end_precedes_answer() -> None:
    details = CallDetails(status=CallStatus.completed, answered_at=at(50), ended_at=at(40))
    assert compute(details) == metrics()


def test_billed_duration_is_never_invented() -> None:
    details = CallDetails(status=CallStatus.completed, answered_at=at(0), ended_at=at(61))
    assert compute(details).billed_duration_s is None


# compute: ring duration


def test_ring_duration_until_answer() -> None:
    details = CallDetails(answered_at=at(4.2004), ended_at=at(60))
    assert compute(details, ringing_at=at(0)).ring_duration_s == 4.2


def test_ring_duration_until_end_when_never_answered() -> None:
    details = CallDetails(status=CallStatus.no_answer, ended_at=at(25))
    assert compute(details, ringing_at=at(5)) == metrics(duration_s=0.0, ring_duration_s=20.0)


def test_ring_duration_unknown_without_ringing_time() -> None:
    details = CallDetails(answered_at=at(4), ended_at=at(60))
    assert compute(details).ring_duration_s is None


def test_ring_duration_unknown_without_answer_or_end() -> None:
    assert compute(CallDetails(), ringing_at=at(0)).ring_duration_s is None


def test_ring_duration_unknown_when_ringing_after_answer() -> None:
    details = CallDetails(answered_at=at(4), ended_at=at(60))
    assert compute(details, ringing_at=at(5)).ring_duration_s is None


# compute: cost


def test_cost_total_summed_from_components() -> None:
    details = CallDetails(
        duration_s=130.0,
        cost=Cost(currency="USD", llm=0.05, stt=0.01, tts=0.03, telephony=0.04, platform=0.012),
    )
    assert compute(details).cost == Cost(
        total=0.142,
        currency="USD",
        llm=0.05,
        stt=0.01,
        tts=0.03,
        telephony=0.04,
        platform=0.012,
        per_minute=0.0655,
    )


def test_cost_total_from_the_known_components_only() -> None:
    details = CallDetails(duration_s=60.0, cost=Cost(llm=0.1, tts=0.2))
    assert compute(details).cost == Cost(total=0.3, llm=0.1, tts=0.2, per_minute=0.3)


def test_given_cost_total_kept_even_if_components_disagree() -> None:
    details = CallDetails(duration_s=120.0, cost=Cost(total=1.0, currency="EUR", llm=0.25))
    assert compute(details).cost == Cost(total=1.0, currency="EUR", llm=0.25, per_minute=0.5)


def test_cost_per_minute_uses_derived_duration() -> None:
    details = CallDetails(answered_at=at(0), ended_at=at(90), cost=Cost(total=0.3))
    assert compute(details) == metrics(duration_s=90.0, cost=Cost(total=0.3, per_minute=0.2))


def test_cost_per_minute_recomputed_over_given_value() -> None:
    details = CallDetails(duration_s=60.0, cost=Cost(total=0.5, per_minute=9.0))
    assert compute(details).cost == Cost(total=0.5, per_minute=0.5)


def test_money_rounded_to_six_decimals() -> None:
    details = CallDetails(duration_s=45.0, cost=Cost(llm=0.12345649, stt=0.0000004))
    assert compute(details).cost == Cost(total=0.123457, llm=0.123456, stt=0.0, per_minute=0.1646)


def test_no_cost_per_minute_when_duration_is_zero() -> None:
    details = CallDetails(status=CallStatus.busy, ended_at=at(3), cost=Cost(telephony=0.01))
    assert compute(details) == metrics(
        duration_s=0.0, cost=Cost(total=0.01, telephony=0.01, per_minute=None)
    )


def test_no_cost_per_minute_when_duration_unknown() -> None:
    details = CallDetails(cost=Cost(total=0.2, currency="USD"))
    assert compute(details).cost == Cost(total=0.2, currency="USD")


def test_cost_total_unknown_without_total_or_components() -> None:
    details = CallDetails(duration_s=60.0, cost=Cost(currency="USD"))
    assert compute(details).cost == Cost(currency="USD")


def test_cost_unknown_when_platform_gave_none() -> None:
    assert compute(CallDetails(duration_s=60.0)).cost is None


# compute: everything together


def test_compute_full_call() -> None:
    details = CallDetails(
        status=CallStatus.completed,
        answered_at=at(4),
        ended_at=at(14),
        billed_duration_s=60.0,
        transcript=[
            said("assistant", "Hi!", start=0.5, end=2.0),
            said("user", "Hello", start=2.5, end=4.0),
            said("assistant", "How can I help?", start=4.75, end=6.0),
            said("user", "Actually", start=5.5, end=6.5),
        ],
        cost=Cost(total=0.05, currency="USD"),
    )
    assert compute(details, ringing_at=at(0)) == Metrics(
        duration_s=10.0,
        billed_duration_s=60.0,
        ring_duration_s=4.0,
        latency=Latency(
            turn=one_sample(750.0),
            time_to_first_word_ms=500.0,
        ),
        interruptions=Interruptions(
            count=1, items=[Interruption(at_s=5.5, duration_s=0.5, text="Actually")]
        ),
        turns=Turns(count=4, user_talk_s=2.5, agent_talk_s=2.75),
        cost=Cost(total=0.05, currency="USD", per_minute=0.3),
    )


def test_turn_latencies_name_each_reply_its_wait() -> None:
    transcript = [
        Utterance(role="assistant", content="hi", start_s=0.5, end_s=1.0),
        Utterance(role="user", content="hello", start_s=1.2, end_s=2.0),
        Utterance(role="assistant", content="yes?", start_s=2.75, end_s=3.0),
        Utterance(role="user", content="so", start_s=3.5, end_s=4.0),
        Utterance(role="assistant", content="overlap", start_s=3.9),
        Utterance(role="user", content="untimed"),
        Utterance(role="assistant", content="after", start_s=9.0),
    ]
    assert turn_latencies(transcript) == [None, None, 750.0, None, None, None, None]
    assert turn_latencies([]) == []
