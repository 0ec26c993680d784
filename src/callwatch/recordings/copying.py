"""One archive run: the recording downloaded (streaming, through the SSRF guard, with the
platform's credentials where it needs them, within the size cap and the deadline), then put in
the org's recording store; its outcome recorded by archive.py."""

import hashlib
import logging
import mimetypes
import tempfile
from urllib.parse import urlsplit

import httpx

from callwatch import providers
from callwatch.db import transaction
from callwatch.errors import Permanent, Retryable, UnusableResponse, internal_error
from callwatch.outbound import http
from callwatch.providers.base import SourceConfig
from callwatch.recordings import archive
from callwatch.recordings.archive import Copied, Job
from callwatch.recordings.store import RecordingStore, key_of, store_for
from callwatch.runtime import Runtime

log = logging.getLogger("callwatch.recordings")

# The shared counters (runtime.COUNTERS) behind `callwatch_recording_archives_total{outcome}`
# and `callwatch_recording_archived_bytes_total`.
OUTCOMES = ("archived", "retried", "failed")
OUTCOME = "recording_archives|"  # + the outcome
ARCHIVED_BYTES = "recording_archived_bytes"
SPOOL_BYTES = 8 * 1024 * 1024  # a download larger than this goes to a temporary file
# What a recording may be served as from callwatch's origin: never HTML, script or anything a
# browser would run (a platform's error page answered with a 200 is refused, not stored).
_PLAYABLE = ("audio/", "video/")
_OPAQUE = frozenset({"application/octet-stream", "binary/octet-stream", "application/ogg"})


def run(rt: Runtime, call_id: str) -> float | None:
    """Archive a call's recording if its archive is due: the countdown to a retry, if any."""
    settings = rt.settings
    with transaction(rt.sessions) as session:
        job = archive.claim(session, rt.vault, call_id, rt.clock(), settings)
    if job is None:
        return None
    store = store_for(settings)
    try:
        with http.bounded(settings.recording_deadline_s, settings.recording_max_bytes):
            main = copy(rt.http, store, job.source, job.url, key_of(job.org_id, call_id))
            dual = None
            if job.dual_url and job.dual_url != job.url:
                dual_key = key_of(job.org_id, call_id, dual=True)
                dual = copy(rt.http, store, job.source, job.dual_url, dual_key)
    except Retryable as exc:
        return _failed(rt, job, exc.detail, exc.retry_after)
    except Permanent as exc:
        return _failed(rt, job, str(exc), None, final=True)
    except Exception as exc:
        log.exception("recording archive run crashed", extra={"call_id": call_id})
        return _failed(rt, job, internal_error(exc), None)
    with transaction(rt.sessions) as session:
        archive.finished(session, job, main, dual, rt.clock())
    stored = main.bytes + (dual.bytes if dual is not None else 0)
    rt.count({OUTCOME + "archived": 1, ARCHIVED_BYTES: stored})
    return None


def _failed(
    rt: Runtime, job: Job, error: str, retry_after: float | None, *, final: bool = False
) -> float | None:
    with transaction(rt.sessions) as session:
        countdown = archive.failed(
            session,
            job,
            error,
            retry_after,
            rt.clock(),
            rt.settings,
            rt.rng.random(),
            final=final,
        )
    rt.count({OUTCOME + ("failed" if countdown is None else "retried"): 1})
    return countdown


def copy(
    client: httpx.Client, store: RecordingStore, source: SourceConfig, url: str, key: str
) -> Copied:
    """Download `url` (inside `http.bounded()`) and put it in the store under `key`."""
    headers = providers.recording_headers_for(source, url)
    digest = hashlib.sha256()
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buffer:

        def sink(chunk: bytes) -> None:
            digest.update(chunk)
            buffer.write(chunk)

        downloaded = http.download(client, url, sink, headers)
        where = f"GET {http.shown(url)}"
        if downloaded.size == 0:
            raise UnusableResponse(f"{where}: an empty file")
        content_type = playable_type(downloaded.content_type, url, where)
        store.put(key, buffer, content_type)
    return Copied(key, downloaded.size, digest.hexdigest(), content_type)


def playable_type(given: str | None, url: str, where: str) -> str:
    """The media type to keep and serve the file as: an audio or video type as sent, else one
    guessed from the URL's extension; UnusableResponse for anything else (HTML, JSON, …)."""
    given = given.lower() if given else None
    if given is not None and given.startswith(_PLAYABLE):
        return given
    if given is None or given in _OPAQUE:
        guessed, _ = mimetypes.guess_type(urlsplit(url).path)
        if guessed is not None and guessed.startswith(_PLAYABLE):
            return guessed
        return given or "application/octet-stream"
    raise UnusableResponse(f"{where}: HTTP 200, {given}: not a recording")
