"""The archive's states (design.md §2, "Recordings are kept"): planned when a record's recording
becomes available, claimed by a worker under a lease, then `archived`, retried with backoff, or
`failed` with its last error; `skipped` for an org that keeps no copies. The row is the truth;
the record's `recording.archive` shows it, rewritten under the call's lock at each change."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from callwatch.calls.assembly import backoff
from callwatch.crypto import Vault
from callwatch.model.records import Archive, ArchivedFile, Recording
from callwatch.orgs import data_settings, tenancy
from callwatch.providers.base import SourceConfig
from callwatch.settings import Settings
from callwatch.tables import Call, RecordingArchive

log = logging.getLogger("callwatch.recordings")

BATCH = 1000
# Runs (claims) of one archive before it is failed, whatever ended them: a download that kills
# its worker every time must stop too.
RUNS_PER_FAILURE = 3


@dataclass(frozen=True)
class Job:
    """A claimed archive run: what the worker downloads, and as whom."""

    call_id: str
    org_id: str
    url: str
    dual_url: str | None
    source: SourceConfig
    lease_until: datetime


@dataclass(frozen=True)
class Copied:
    """One file now in the store."""

    key: str
    bytes: int
    sha256: str
    content_type: str


def view(row: RecordingArchive) -> Archive:
    dual = None
    if row.status == "archived" and row.dual_key is not None:
        dual = ArchivedFile(
            bytes=row.dual_bytes or 0,
            sha256=row.dual_sha256 or "",
            content_type=row.dual_content_type or "",
        )
    return Archive(
        status=row.status,
        bytes=row.bytes,
        sha256=row.sha256,
        content_type=row.content_type,
        archived_at=row.archived_at,
        error=row.last_error if row.status == "failed" else None,
        dual=dual,
    )


def plan(
    session: Session, settings: Settings, call: Call, recording: Recording, now: datetime
) -> tuple[Archive | None, bool]:
    """The record's `recording.archive` for this recording (None: nothing to archive, or a
    deployment that archives nothing), and whether a worker is to start archiving it now. An
    archived copy stays; an archive of other URLs (a platform that re-signed them) starts
    again."""
    if not settings.archive_recordings or recording.status != "available" or not recording.url:
        return None, False
    row = session.get(RecordingArchive, call.id)
    if row is not None and (
        row.status == "archived" or (row.url, row.dual_url) == (recording.url, recording.dual_url)
    ):
        return view(row), False
    chosen = data_settings.of_org(session, call.org_id)
    if row is None:
        row = RecordingArchive(call_id=call.id, org_id=call.org_id, created_at=now)
        session.add(row)
    pending = chosen.archive_recordings
    row.status = "pending" if pending else "skipped"
    row.url, row.dual_url = recording.url, recording.dual_url
    row.attempts = row.failures = 0
    row.next_at = now if pending else None
    row.lease_until = row.last_error = row.archived_at = None
    row.key = row.sha256 = row.content_type = row.bytes = None
    row.dual_key = row.dual_sha256 = row.dual_content_type = row.dual_bytes = None
    row.updated_at = now
    return view(row), pending


def claim(
    session: Session, vault: Vault, call_id: str, now: datetime, settings: Settings
) -> Job | None:
    """Take the archive's lease and count the run; None: not to be run now."""
    call = session.scalars(select(Call).where(Call.id == call_id).with_for_update()).first()
    row = session.get(RecordingArchive, call_id, with_for_update=True)
    if call is None or row is None or row.status != "pending":
        return None
    if row.lease_until is not None and row.lease_until > now:
        return None  # another run holds it; duplicates of a message end here
    row.attempts += 1
    if row.attempts > settings.recording_max_failures * RUNS_PER_FAILURE:
        _end(row, f"gave up after {row.attempts - 1} runs", now, call)
        return None
    source = tenancy.source_by_id(session, vault, call.source_id)
    # The download's deadline, then room to store it; the sweeper takes over once it lapses.
    row.lease_until = now + timedelta(seconds=settings.recording_deadline_s + settings.lease_s)
    row.next_at = row.lease_until
    row.updated_at = now
    return Job(call_id, row.org_id, row.url, row.dual_url, source, row.lease_until)


def finished(session: Session, job: Job, main: Copied, dual: Copied | None, now: datetime) -> None:
    """The files are in the store: the archive is `archived`, and the record says so."""
    call, row = _locked(session, job)
    if row is None:
        return
    row.status = "archived"
    row.key, row.bytes, row.sha256, row.content_type = (
        main.key,
        main.bytes,
        main.sha256,
        main.content_type,
    )
    if dual is not None:
        row.dual_key, row.dual_bytes = dual.key, dual.bytes
        row.dual_sha256, row.dual_content_type = dual.sha256, dual.content_type
    row.archived_at = now
    row.next_at = row.lease_until = row.last_error = None
    row.updated_at = now
    _show(call, row, now)
    log.info("recording archived", extra={"call_id": job.call_id, "bytes": main.bytes})


def failed(
    session: Session,
    job: Job,
    error: str,
    retry_after: float | None,
    now: datetime,
    settings: Settings,
    jitter: float,
    *,
    final: bool = False,
) -> float | None:
    """A run failed: the countdown to the next, or None once the archive has failed."""
    call, row = _locked(session, job)
    if row is None:
        return None
    row.failures += 1
    row.last_error = error
    row.lease_until = None
    row.updated_at = now
    if final or row.failures >= settings.recording_max_failures:
        _end(row, error, now, call)
        return None
    delay = backoff(
        row.failures,
        base=settings.recording_backoff_base_s,
        cap=settings.max_countdown_s,
        retry_after=retry_after,
        jitter=jitter,
    )
    row.next_at = now + timedelta(seconds=delay)
    log.info(
        "recording download failed, retrying",
        extra={"call_id": job.call_id, "error": error, "retry_in_s": round(delay, 2)},
    )
    return delay


def overdue(session: Session, now: datetime, cutoff: datetime) -> list[str]:
    """Pending archives whose run is overdue (a lost message, a killed worker), pushed forward
    so that the next sweep does not send them again while they are queued."""
    due = list(
        session.scalars(
            select(RecordingArchive.call_id)
            .where(RecordingArchive.status == "pending", RecordingArchive.next_at < cutoff)
            .order_by(RecordingArchive.next_at)
            .limit(BATCH)
        )
    )
    if due:
        session.execute(
            update(RecordingArchive).where(RecordingArchive.call_id.in_(due)).values(next_at=now)
        )
    return due


def _locked(session: Session, job: Job) -> tuple[Call | None, RecordingArchive | None]:
    """The call, then its archive, locked in that order (as the pipeline takes them); no
    archive if it is no longer this run's (planned again for other URLs meanwhile)."""
    call = session.scalars(select(Call).where(Call.id == job.call_id).with_for_update()).first()
    row = session.get(RecordingArchive, job.call_id, with_for_update=True)
    if row is None or row.status != "pending" or row.url != job.url:
        return call, None
    return call, row


def _end(row: RecordingArchive, error: str, now: datetime, call: Call | None) -> None:
    row.status = "failed"
    row.last_error = error
    row.next_at = row.lease_until = None
    row.updated_at = now
    _show(call, row, now)
    log.warning("recording archive failed", extra={"call_id": row.call_id, "error": error})


def _show(call: Call | None, row: RecordingArchive, now: datetime) -> None:
    """The record's `recording.archive` as the row now has it (a record of another recording,
    rebuilt meanwhile, is left as it is: its own plan shows its archive)."""
    if call is None or call.record is None:
        return
    recording = dict(call.record.get("recording") or {})
    if recording.get("url") != row.url:
        return
    recording["archive"] = view(row).model_dump(mode="json")
    call.record = {**call.record, "recording": recording}
    call.updated_at = now
