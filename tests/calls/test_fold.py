"""The pure call-state fold: monotonic, order-independent, every event in the timeline."""

import itertools
from datetime import UTC, datetime, timedelta

from callwatch.calls.fold import CallState, fold
from callwatch.model.events import CallEvent, CallFields, CallStatus, advance
from callwatch.model.records import TimelineEntry

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def ev(
    seconds: float,
    status: CallStatus | None,
    *,
    terminal: bool = False,
    type_: str = "call.status_changed",
    **fields: str,
) -> CallEvent:
    return CallEvent(
        provider_call_id="c1",
        type=type_,
        status=status,
        at=T0 + timedelta(seconds=seconds),
        terminal=terminal,
        fields=CallFields(**fields),
        dedupe_key=f"{status}-{seconds}",
    )


LIFECYCLE = [
    ev(0, CallStatus.initiated, agent_id="a1"),
    ev(1, CallStatus.ringing),
    ev(5, CallStatus.in_progress, from_number="+1555"),
    ev(65, CallStatus.completed, terminal=True, type_="call.completed"),
]


def test_fold_of_a_whole_call() -> None:
    assert fold([(str(n), e) for n, e in enumerate(LIFECYCLE)]) == CallState(
        status=CallStatus.completed,
        fields=CallFields(agent_id="a1", from_number="+1555"),
        started_at=T0,
        initiated_at=T0,
        ringing_at=T0 + timedelta(seconds=1),
        answered_at=T0 + timedelta(seconds=5),
        ended_at=T0 + timedelta(seconds=65),
        terminal=True,
        completion=None,
        timeline=[TimelineEntry(status=e.status, at=e.at, event=e.type) for e in LIFECYCLE],
    )


def test_every_arrival_order_gives_the_same_state() -> None:
    expected = fold([(str(n), e) for n, e in enumerate(LIFECYCLE)])
    for order in itertools.permutations(range(4)):
        assert fold([(str(n), LIFECYCLE[n]) for n in order]) == expected


def test_status_never_moves_backwards_and_terminal_is_final() -> None:
    assert advance(CallStatus.in_progress, CallStatus.ringing) == CallStatus.in_progress
    assert advance(CallStatus.completed, CallStatus.ringing) == CallStatus.completed
    assert advance(CallStatus.completed, CallStatus.failed) == CallStatus.completed
    assert advance(CallStatus.ringing, None) == CallStatus.ringing
    assert advance(None, CallStatus.queued) == CallStatus.queued


def test_a_ringing_stamped_after_completion_is_kept_in_the_timeline_only() -> None:
    late = ev(70, CallStatus.ringing)
    state = fold([("0", LIFECYCLE[3]), ("1", late)])
    assert (state.status, [t.status for t in state.timeline]) == (
        CallStatus.completed,
        [CallStatus.completed, CallStatus.ringing],
    )
    assert state.ringing_at == late.at


def test_later_events_override_fields_and_merge_metadata() -> None:
    first = ev(0, CallStatus.initiated, agent_id="a1")
    second = ev(1, CallStatus.ringing, agent_id="a2")
    first.fields.metadata = {"x": 1}
    second.fields.metadata = {"y": 2}
    assert fold([("1", second), ("0", first)]).fields == CallFields(
        agent_id="a2", metadata={"x": 1, "y": 2}
    )
