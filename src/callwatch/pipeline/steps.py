"""The worker side: apply inbox events to calls, then assemble finished calls step by step."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from callwatch import providers, tracing
from callwatch.calls import assembly, store
from callwatch.calls.fold import CallState, fold
from callwatch.db import memo, transaction
from callwatch.downstream.effects import Effects
from callwatch.errors import Permanent, Retryable, StoreUnavailable, internal_error
from callwatch.model import call_metrics
from callwatch.model.records import CallDetails, CallRecord, Recording
from callwatch.orgs import data_settings, tenancy
from callwatch.outbound import http
from callwatch.pipeline import fanout, quarantine
from callwatch.providers.base import FetchContext, SourceConfig
from callwatch.recordings import archive
from callwatch.runtime import Runtime
from callwatch.tables import Call, InboxEvent

log = logging.getLogger("callwatch.pipeline")

UNFINISHED = ("pending", "fetching", "awaiting_recording")


@dataclass(frozen=True)
class Claimed:
    """A call whose assembly run is claimed (its lease committed): what the run needs."""

    call_id: str
    source: SourceConfig
    context: FetchContext
    lease_until: datetime
    redact: bool  # the org's personal data is redacted before it is stored (`_redacts`)


@dataclass(frozen=True)
class Ingested:
    ready: list[Claimed]  # calls whose first assembly run is claimed: run them now
    effects: Effects


@dataclass(frozen=True)
class Steps:
    """What assembly runs leave: the countdown to each call's next step, and what follows."""

    countdowns: dict[str, float]
    effects: Effects


def ingest(rt: Runtime, inbox_ids: list[str]) -> Ingested:
    """Apply the events and claim the calls now ready to assemble, in one transaction.

    An event that fails the transaction (not an unreachable database, which is retried) fails
    alone: the ids are halved until it is one, which is quarantined with the reason, and every
    other event is applied.
    """
    try:
        return _ingest(rt, inbox_ids)
    except StoreUnavailable:
        raise
    except Exception as exc:
        if len(inbox_ids) == 1:
            _quarantine(rt, inbox_ids[0], exc)
            return Ingested([], Effects())
        middle = len(inbox_ids) // 2
        first, second = ingest(rt, inbox_ids[:middle]), ingest(rt, inbox_ids[middle:])
        first.effects.add(second.effects)
        return Ingested(first.ready + second.ready, first.effects)


def _quarantine(rt: Runtime, inbox_id: str, exc: Exception) -> None:
    with transaction(rt.sessions) as session:
        row = session.get(InboxEvent, inbox_id)
        reason = quarantine.reason_of(row, exc)
        quarantine.put(session, [inbox_id], reason, rt.clock())
    # A database refusal's text holds the statement's parameters (the sender's content): its
    # reason says enough. Anything else is a bug, whose traceback the operator needs.
    log.warning(
        "event quarantined",
        extra={"event_id": inbox_id, "reason": reason},
        exc_info=None if isinstance(exc, DBAPIError) else exc,
    )


def _ingest(rt: Runtime, inbox_ids: list[str]) -> Ingested:
    effects = Effects()
    ready = []
    with (
        tracing.span("apply events", attributes={"callwatch.events": len(inbox_ids)}),
        transaction(rt.sessions) as session,
    ):
        now = rt.clock()
        applied = store.apply_inbox(session, inbox_ids, now, rt.settings.match_wait_s)
        # The reads below do not depend on the calls' changes, which `calls.save` writes.
        with session.no_autoflush:
            for change in applied:
                if change.assembled:
                    _rebuild(session, rt, change.call, change.state, now, effects)
                if change.status_changed:
                    previous = change.previous_status
                    effects.add(fanout.status_changed(session, change.call, previous, now))
                if change.ready_to_assemble and _begin_run(session, rt, change.call, now, effects):
                    ready.append(_claimed(session, rt, change.call, change.state))
        store.save(session, [change.call for change in applied])
    for change in applied:
        log.info("events applied", extra={"call_id": change.call.id})
    return Ingested(ready, effects)


def assemble(rt: Runtime, call_id: str) -> Steps:
    """One assembly step of a call, if it is due."""
    effects = Effects()
    with transaction(rt.sessions) as session:
        call = _locked(session, [call_id]).get(call_id)
        claimed = None
        if call is not None and _begin_run(session, rt, call, rt.clock(), effects):
            claimed = _claimed(session, rt, call, store.state_of(session, call_id))
    if claimed is None:
        return Steps({}, effects)
    steps = run(rt, [claimed])
    effects.add(steps.effects)
    return Steps(steps.countdowns, effects)


def run(rt: Runtime, batch: Sequence[Claimed]) -> Steps:
    """Claimed runs: fetch each call's details, then store the records or the failures.

    The fetched calls are completed together, in one transaction: a worker's cost is mostly per
    transaction and per statement, not per call (bench/README.md).
    """
    effects = Effects()
    countdowns: dict[str, float] = {}
    fetched: list[tuple[Claimed, CallDetails]] = []
    for claimed in batch:
        if rt.clock() >= claimed.lease_until:
            # Claimed with a batch whose earlier runs took this long: the sweeper has it now.
            continue
        attributes = {
            "callwatch.call_id": claimed.call_id,
            "callwatch.provider": claimed.source.provider,
        }
        with tracing.span("fetch details", attributes=attributes):
            outcome = _fetch(rt, claimed, effects)
        if isinstance(outcome, CallDetails):
            fetched.append((claimed, outcome))
        elif outcome is not None:
            countdowns[claimed.call_id] = outcome
    try:
        countdowns |= _completed(rt, fetched, effects)
    except StoreUnavailable:
        raise
    except Exception:
        # A bug in one call's completion must not fail the others: complete them one by one.
        for claimed, details in fetched:
            try:
                countdowns |= _completed(rt, [(claimed, details)], effects)
            except StoreUnavailable:
                raise
            except Exception as exc:
                delay = _crashed(rt, claimed.call_id, exc, effects)
                if delay is not None:
                    countdowns[claimed.call_id] = delay
    return Steps(countdowns, effects)


def _fetch(rt: Runtime, claimed: Claimed, effects: Effects) -> CallDetails | float | None:
    """The call's details, or else its failure stored: the countdown to its next run, if any."""
    call_id = claimed.call_id
    # Over before the lease lapses: the sweeper's next run of this call never overlaps it.
    left = (claimed.lease_until - rt.clock()).total_seconds()
    try:
        with http.bounded(min(rt.settings.fetch_deadline_s, left), rt.settings.fetch_max_bytes):
            return providers.get(claimed.source.provider).fetch(
                rt.http, claimed.source, claimed.context
            )
    except Retryable as exc:
        with transaction(rt.sessions) as session:
            return _failed(session, rt, call_id, exc.detail, exc.retry_after, effects)
    except Permanent as exc:
        with transaction(rt.sessions) as session:
            return _failed(session, rt, call_id, str(exc), None, effects, final=True)
    except Exception as exc:
        return _crashed(rt, call_id, exc, effects)


def _completed(
    rt: Runtime, fetched: Sequence[tuple[Claimed, CallDetails]], effects: Effects
) -> dict[str, float]:
    """Complete the fetched calls in one transaction: the countdowns of those still waiting."""
    if not fetched:
        return {}
    countdowns = {}
    done = Effects()  # kept only once committed
    with (
        tracing.span("store records", attributes={"callwatch.calls": len(fetched)}) as span,
        transaction(rt.sessions) as session,
    ):
        now = rt.clock()
        call_ids = [claimed.call_id for claimed, _ in fetched]
        locked = _locked(session, call_ids)
        events = store.events_of_calls(session, call_ids)
        completed = []
        # The reads below do not depend on the calls' changes, which `calls.save` writes.
        with session.no_autoflush:
            for claimed, details in fetched:
                call = locked.get(claimed.call_id)
                if call is None or call.assembly_state not in UNFINISHED:
                    continue
                state = fold(events[call.id])
                delay = _complete(session, rt, call, claimed, state, details, now, done)
                span.add_event("record stored", {"callwatch.call_id": call.id})
                if delay is not None:
                    countdowns[call.id] = delay
                completed.append(call)
        store.save(session, completed)
    effects.add(done)
    return countdowns


def _crashed(rt: Runtime, call_id: str, exc: Exception, effects: Effects) -> float | None:
    """A bug, not the platform: counted like a failed attempt so it cannot loop for ever."""
    log.exception("assembly step crashed", extra={"call_id": call_id})
    with transaction(rt.sessions) as session:
        return _failed(session, rt, call_id, internal_error(exc), None, effects)


def _locked(session: Session, call_ids: Sequence[str]) -> dict[str, Call]:
    """The calls by id, locked in id order (as `calls.apply_inbox` locks them): no deadlock."""
    query = select(Call).where(Call.id.in_(call_ids)).order_by(Call.id).with_for_update()
    return {call.id: call for call in session.scalars(query)}


def _begin_run(session: Session, rt: Runtime, call: Call, now: datetime, effects: Effects) -> bool:
    """Take the (locked) call's assembly lease and count the run; False: not to be run now."""
    if call.assembly_state not in UNFINISHED:
        return False
    if call.assembly_lease_until is not None and call.assembly_lease_until > now:
        return False  # another run holds the lease; duplicates of a message end here
    call.assembly_attempts += 1
    if call.assembly_attempts > rt.settings.assembly_max_runs:
        error = f"gave up after {rt.settings.assembly_max_runs} runs"
        effects.add(_finish_failed(session, call, error, now))
        return False
    if call.assembly_state == "pending":
        call.assembly_state = "fetching"
        call.recording_deadline = now + timedelta(seconds=rt.settings.recording_wait_s)
    # Committed before the fetch: a worker killed mid-run leaves an expiring lease, which the
    # sweeper notices once assembly_next_at has passed.
    call.assembly_lease_until = now + timedelta(seconds=rt.settings.lease_s)
    call.assembly_next_at = call.assembly_lease_until
    log.info("assembly run", extra={"call_id": call.id, "attempt": call.assembly_attempts})
    return True


def _claimed(session: Session, rt: Runtime, call: Call, state: CallState) -> Claimed:
    source = memo(
        session,
        ("source", call.source_id),
        lambda: tenancy.source_by_id(session, rt.vault, call.source_id),
    )
    context = FetchContext(call.provider_call_id, state.completion, state.fields)
    assert call.assembly_lease_until is not None  # taken by _begin_run
    redact = _redacts(session, rt, call.org_id)
    return Claimed(call.id, source, context, call.assembly_lease_until, redact)


def _redacts(session: Session, rt: Runtime, org_id: str) -> bool:
    """Whether the org's calls have their personal data redacted before it is stored (its
    `redact_pii`): the one place the pipeline asks, once per transaction and org."""
    return data_settings.of_org(session, org_id).redact_pii


def _finish_failed(session: Session, call: Call, error: str, now: datetime) -> Effects:
    call.assembly_state = "failed"
    call.assembly_last_error = error
    call.assembly_next_at = None
    call.assembly_lease_until = None
    call.updated_at = now
    log.warning("assembly failed", extra={"call_id": call.id, "error": error})
    return fanout.assembly_failed(session, call, error, now)


def _failed(
    session: Session,
    rt: Runtime,
    call_id: str,
    error: str,
    retry_after: float | None,
    effects: Effects,
    *,
    final: bool = False,
) -> float | None:
    now = rt.clock()
    call = _locked(session, [call_id]).get(call_id)
    if call is None or call.assembly_state not in UNFINISHED:
        return None
    call.assembly_failures += 1
    call.assembly_last_error = error
    call.assembly_lease_until = None
    if final or call.assembly_failures >= rt.settings.fetch_max_failures:
        effects.add(_finish_failed(session, call, error, now))
        return None
    delay = assembly.backoff(
        call.assembly_failures,
        base=rt.settings.fetch_backoff_base_s,
        cap=rt.settings.max_countdown_s,
        retry_after=retry_after,
        jitter=rt.rng.random(),
    )
    call.assembly_next_at = now + timedelta(seconds=delay)
    call.updated_at = now
    log.info(
        "detail fetch failed, retrying",
        extra={"call_id": call_id, "error": error, "retry_in_s": round(delay, 2)},
    )
    return delay


def _complete(
    session: Session,
    rt: Runtime,
    call: Call,
    claimed: Claimed,
    state: CallState,
    details: CallDetails,
    now: datetime,
    effects: Effects,
) -> float | None:
    merged = assembly.merge(state, providers.settled(call.provider, details, state.fields))
    recording = assembly.recording_of(merged, now)
    store.keep_details(call, details, redact=claimed.redact)
    call.assembly_failures = 0
    call.assembly_last_error = None
    call.assembly_lease_until = None
    call.updated_at = now
    if recording.status == "pending":
        deadline = call.recording_deadline or now
        left = (deadline - now).total_seconds()
        if left > 0:
            delay = assembly.recording_delay(
                call.assembly_attempts - 1,
                low=rt.settings.recording_check_min_s,
                high=min(rt.settings.recording_check_max_s, rt.settings.max_countdown_s),
                left=left,
            )
            call.assembly_state = "awaiting_recording"
            call.assembly_next_at = now + timedelta(seconds=delay)
            return delay
        recording = Recording(status="missing")
    call.assembly_state = "assembled"
    call.assembled_at = now
    call.assembly_next_at = None
    source = claimed.source.name
    record = _store_record(
        session, rt, call, source, state, merged, recording, now, effects, redact=claimed.redact
    )
    effects.add(fanout.assembled(session, call, record, now))
    log.info("call assembled", extra={"call_id": call.id, "recording": recording.status})
    return None


def _rebuild(
    session: Session, rt: Runtime, call: Call, state: CallState, now: datetime, effects: Effects
) -> None:
    """A late event for an assembled (locked) call: recompute its record from the details."""
    if call.record is None:
        return
    details = CallDetails.model_validate(call.details or {})
    merged = assembly.merge(state, providers.settled(call.provider, details, state.fields))
    recording = CallRecord.model_validate(call.record).recording
    late = assembly.recording_of(merged, now)
    if late.status == "available" and recording.status != "available":
        recording = late  # a recording event after the wait gave up: the record gains it
    source = store.source_name(session, call)
    redact = _redacts(session, rt, call.org_id)
    _store_record(session, rt, call, source, state, merged, recording, now, effects, redact=redact)


def _store_record(
    session: Session,
    rt: Runtime,
    call: Call,
    source: str,
    state: CallState,
    merged: CallDetails,
    recording: Recording,
    now: datetime,
    effects: Effects,
    *,
    redact: bool,
) -> CallRecord:
    # The archive of the recording, started once it is available (recordings/archive.py).
    shown, start = archive.plan(session, rt.settings, call, recording, now)
    recording = recording.model_copy(update={"archive": shown})
    if start:
        effects.archives.append(call.id)
    computed = call_metrics.compute(merged, ringing_at=state.ringing_at)
    built = store.build_record(call, source, state, merged, recording, computed, now)
    record = store.keep_record(session, call, built, redact=redact)
    call.updated_at = now
    return record
