"""Pure assembly helpers: merging details with events, recording status, backoff."""

from datetime import UTC, datetime, timedelta

from callwatch.calls.assembly import backoff, merge, recording_delay, recording_of
from callwatch.calls.fold import CallState
from callwatch.model.events import CallFields, CallStatus
from callwatch.model.records import CallDetails, Recording

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def state(**changes: object) -> CallState:
    base = CallState(
        status=CallStatus.completed,
        started_at=T0,
        answered_at=T0,
        ended_at=T0 + timedelta(seconds=60),
        terminal=True,
        fields=CallFields(agent_id="from-event", to_number="+1", metadata={"a": 1}),
    )
    return base.model_copy(update=changes)


def test_details_win_and_events_fill_the_gaps() -> None:
    merged = merge(
        state(), CallDetails(agent_id="from-api", status=CallStatus.failed, metadata={"b": 2})
    )
    assert merged == CallDetails(
        agent_id="from-api",
        to_number="+1",
        status=CallStatus.completed,
        created_at=T0,
        answered_at=T0,
        ended_at=T0 + timedelta(seconds=60),
        metadata={"a": 1, "b": 2},
    )


def test_recording_status() -> None:
    answered = CallDetails(status=CallStatus.completed, answered_at=T0)
    with_url = answered.model_copy(update={"recording": Recording(url="https://r/1.wav")})
    said_missing = answered.model_copy(update={"recording": Recording(status="missing")})
    unanswered = CallDetails(status=CallStatus.no_answer)
    assert recording_of(with_url, T0) == Recording(
        status="available", url="https://r/1.wav", available_at=T0
    )
    assert recording_of(said_missing, T0) == Recording(status="missing")
    assert recording_of(answered, T0) == Recording(status="pending")
    assert recording_of(unanswered, T0) == Recording(status="none")


def test_backoff_grows_with_jitter_honours_retry_after_and_is_capped() -> None:
    delays = [backoff(n, base=2, cap=300, retry_after=None, jitter=0.5) for n in range(1, 6)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert backoff(1, base=2, cap=300, retry_after=None, jitter=0.0) == 1.0
    assert backoff(1, base=2, cap=300, retry_after=30, jitter=0.5) == 30
    assert backoff(20, base=2, cap=300, retry_after=None, jitter=0.9) == 300
    assert backoff(1, base=2, cap=300, retry_after=9999, jitter=0.5) == 300


def test_recording_checks_grow_and_stop_at_the_deadline() -> None:
    assert [recording_delay(n, low=2, high=30, left=1000) for n in range(0, 9, 2)] == [
        2.0,
        4.5,
        10.125,
        22.78125,
        30,
    ]
    assert recording_delay(3, low=2, high=30, left=1.5) == 1.5
