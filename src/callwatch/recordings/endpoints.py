"""`GET /api/calls/{call_id}/recording` (and `/recording/dual`): the archived file, with byte
ranges so an audio player can seek; before it is archived, a redirect to the platform's URL
when that URL needs no secret, else 404 (design.md §8)."""

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from callwatch import providers
from callwatch.calls import store
from callwatch.db import transaction
from callwatch.errors import NotFound, RecordingStoreUnavailable
from callwatch.model.records import CallRecord
from callwatch.orgs import tenancy
from callwatch.outbound import ssrf
from callwatch.recordings import ranges
from callwatch.recordings.store import store_for
from callwatch.settings import Settings
from callwatch.tables import RecordingArchive
from callwatch.validation import path_param
from callwatch.web.auth import require_org
from callwatch.web.operations import Operation
from callwatch.web.problems import problem
from callwatch.web.services import Services

PATH = "/api/calls/{call_id}/recording"
TAG = "calls"


@dataclass(frozen=True)
class _Stored:
    key: str
    size: int
    sha256: str
    content_type: str


def recording(request: Request) -> Response:
    return _serve(request, dual=False)


def dual_recording(request: Request) -> Response:
    return _serve(request, dual=True)


def _serve(request: Request, *, dual: bool) -> Response:
    # require_org is the one door; a dashboard session opens it too (the call page's player).
    org_id = require_org(request, session=True)
    services: Services = request.app.state.services
    runtime = services.runtime
    with transaction(runtime.sessions) as session:
        call = store.find(session, org_id, path_param(request, "call_id"))
        row = session.get(RecordingArchive, call.id)
        if row is not None and row.status == "archived" and row.key is not None:
            stored = _stored(row, dual)
        else:
            stored = None
            record = CallRecord.model_validate(call.record) if call.record else None
            url = _platform_url(record, dual)
            if url is None:
                raise NotFound("the call has no recording archived")
            source = tenancy.source_by_id(session, runtime.vault, call.source_id)
    if stored is not None:  # read from the store with no database connection held
        return _file(request, stored, runtime.settings)
    assert url is not None  # not archived: the platform's URL, found above
    if providers.recording_headers_for(source, url) is not None:
        raise NotFound("the call's recording is not archived yet (its URL needs credentials)")
    return RedirectResponse(url, status_code=307, headers={"cache-control": "no-store"})


def _stored(row: RecordingArchive, dual: bool) -> _Stored:
    if not dual or row.dual_url == row.url:  # a dual-channel recording is its one file
        return _Stored(row.key or "", row.bytes or 0, row.sha256 or "", row.content_type or "")
    if row.dual_key is None:
        raise NotFound("the call's recording has no dual-channel file")
    return _Stored(
        row.dual_key, row.dual_bytes or 0, row.dual_sha256 or "", row.dual_content_type or ""
    )


def _platform_url(record: CallRecord | None, dual: bool) -> str | None:
    """The platform's URL while it is a fetchable http(s) one."""
    if record is None or record.recording.status != "available":
        return None
    url = record.recording.dual_url if dual else record.recording.url
    if url is None:
        return None
    try:
        ssrf.parse_url(url)
    except ValueError:
        return None
    return url


def _file(request: Request, stored: _Stored, settings: Settings) -> Response:
    headers = {
        "accept-ranges": "bytes",
        "etag": f'"{stored.sha256}"',
        "cache-control": "private, max-age=3600",
        "x-content-type-options": "nosniff",
        "content-disposition": "inline",
    }
    try:
        span = ranges.requested(request.headers.get("range"), stored.size)
    except ranges.Unsatisfiable as exc:
        response = problem(416, "Range not satisfiable", str(exc), field="Range")
        response.headers["content-range"] = f"bytes */{stored.size}"
        return response
    start, end = span if span is not None else (0, stored.size - 1)
    try:
        chunks = store_for(settings).open(stored.key, start, end)
    except RecordingStoreUnavailable as exc:
        return problem(503, "Service unavailable", str(exc))
    headers["content-length"] = str(end - start + 1)
    if span is not None:
        headers["content-range"] = f"bytes {start}-{end}/{stored.size}"
    return StreamingResponse(
        chunks,
        status_code=206 if span is not None else 200,
        media_type=stored.content_type,
        headers=headers,
    )


_RANGES = (
    "Streams the archived file (`recording.archive.status` = `archived`), with HTTP Range: "
    "`Range: bytes=first-last` gets 206 and `Content-Range`, a range past the end 416. Before "
    "it is archived: a 307 redirect to the platform's URL when that URL needs no secret, else "
    "404. Without an `Authorization` header, a dashboard session's cookie is taken instead (the "
    "call page's audio player)."
)

_OTHER_ANSWERS = {
    206: "the requested byte range, with `Content-Range`",
    307: "not archived yet: the platform's URL (`Location`), which needs no secret",
}

ENDPOINTS = [
    Operation(
        recording,
        "get",
        PATH,
        "The call's recording, from callwatch's own store",
        TAG,
        response={"audio/*": "the recording (or the requested byte range)"},
        errors=(404, 416),
        description=_RANGES,
        extra={"responses": _OTHER_ANSWERS},
    ),
    Operation(
        dual_recording,
        "get",
        PATH + "/dual",
        "The call's dual-channel recording, from callwatch's own store",
        TAG,
        response={"audio/*": "the recording (or the requested byte range)"},
        errors=(404, 416),
        extra={"responses": _OTHER_ANSWERS},
        description=_RANGES + " A platform whose recording is dual-channel has one file: both "
        "paths serve it.",
    ),
]
