"""`/calls` (the call log, its live rows and exports) and `/calls/{call_id}` (one call).

Each reads through the query API's own functions (query.queries, query.export, calls.store),
scoped to the signed-in org: a page shows exactly what the org's API key sees.
"""

import json
from typing import Any
from urllib.parse import quote, urlencode

from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from callwatch.calls import store
from callwatch.dashboard import charts
from callwatch.dashboard.render import media_origin, page, secured
from callwatch.db import transaction
from callwatch.downstream.endpoints import send_deliveries
from callwatch.errors import NotFound, RequestError
from callwatch.model.call_metrics import turn_latencies
from callwatch.model.events import CallStatus
from callwatch.model.records import CallRecord
from callwatch.pipeline import replay
from callwatch.query import export, queries
from callwatch.query.filters import parse
from callwatch.retention import erasures
from callwatch.tables import Call
from callwatch.validation import path_param
from callwatch.web.services import services_of
from callwatch.web.sessions import Viewer

PAGE_SIZE = 25
# The call log's filter fields, as GET /api/calls names them.
FILTERS = (
    "agent_id",
    "status",
    "direction",
    "source",
    "search",
    "customer_phone",
    "date_from",
    "date_to",
    "has_recording",
)


def _filters(request: Request) -> dict[str, list[str]]:
    """The query string without empty fields (an HTML form sends every field)."""
    params = request.query_params
    return {
        name: params.getlist(name)
        for name in dict.fromkeys(params.keys())
        if any(value != "" for value in params.getlist(name))
    }


def _query_string(filters: dict[str, list[str]], **extra: Any) -> str:
    pairs = [(name, value) for name, values in filters.items() for value in values]
    pairs += [(name, str(value)) for name, value in extra.items() if value is not None]
    return urlencode(pairs)


def _listing(request: Request, viewer: Viewer) -> dict[str, Any]:
    filters = _filters(request)
    pairs = [(name, value) for name, values in filters.items() for value in values]
    if "limit" not in filters:
        pairs.append(("limit", str(PAGE_SIZE)))
    error = None
    try:
        query = parse(queries.ListQuery, QueryParams(pairs))
    except RequestError as exc:
        error, query = exc.detail, queries.ListQuery(limit=PAGE_SIZE)
    with transaction(services_of(request).runtime.sessions) as session:
        listed = queries.page(session, viewer.org_id, query)
    records = [CallRecord.model_validate_json(item) for item in listed.items]
    base = {name: values for name, values in filters.items() if name not in ("page", "skip")}
    number = query.page or 1
    last = max((listed.meta.total + query.limit - 1) // query.limit, 1)
    return {
        "viewer": viewer,
        "records": records,
        "total": listed.meta.total,
        "total_exact": listed.meta.total_exact,
        "page_number": number,
        "pages": last,
        "previous": _query_string(base, page=number - 1) if number > 1 else None,
        "next": _query_string(base, page=number + 1) if number < last else None,
        "current": _query_string(filters),
        "exports": {
            kind: "/calls/export?" + _query_string(base, format=kind) for kind in ("csv", "ndjson")
        },
        "filters": {name: (filters.get(name) or [""])[0] for name in FILTERS},
        "chosen_status": filters.get("status", []),
        "statuses": [status.value for status in CallStatus],
        "error": error,
    }


def call_log(request: Request, viewer: Viewer) -> Response:
    context = _listing(request, viewer)
    return page(request, "calls.html", context, 400 if context["error"] else 200)


def call_rows(request: Request, viewer: Viewer) -> Response:
    """The call log's rows alone: htmx polls it, so new calls appear without a reload."""
    return page(request, "call_rows.html", _listing(request, viewer))


def export_calls(request: Request, viewer: Viewer) -> Response:
    try:
        query = parse(export.ExportQuery, request.query_params)
    except RequestError as exc:
        return page(request, "message.html", {"viewer": viewer, "message": exc.detail}, 400)
    chunks = export.stream(services_of(request).runtime.sessions, viewer.org_id, query)
    filename = f"calls.{'csv' if query.format == 'csv' else 'ndjson'}"
    return secured(
        StreamingResponse(
            chunks,
            media_type=export.media_type(query),
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )
    )


def audio_url(record: CallRecord) -> tuple[str | None, str | None]:
    """Where the page's player reads the recording, and the origin the page's CSP must add for
    it: callwatch's archived copy once there is one (served with ranges, the session admitted;
    no origin to add), until then the platform's URL if it is http(s) on an origin a CSP can
    name (else no player rather than a looser policy)."""
    archive = record.recording.archive
    if archive is not None and archive.status == "archived":
        return f"/api/calls/{quote(record.id, safe='')}/recording", None
    origin = media_origin(record.recording.url)
    return (record.recording.url, origin) if origin is not None else (None, None)


def _record(request: Request, viewer: Viewer) -> tuple[Call, dict[str, Any]]:
    with transaction(services_of(request).runtime.sessions) as session:
        call = store.find(session, viewer.org_id, path_param(request, "call_id"))
        return call, queries.record_json(session, call)


def call_page(request: Request, viewer: Viewer) -> Response:
    try:
        call, raw = _record(request, viewer)
        with transaction(services_of(request).runtime.sessions) as session:
            stored = queries.events(session, viewer.org_id, call.id)
    except NotFound as exc:
        return page(request, "message.html", {"viewer": viewer, "message": exc.detail}, 404)
    record = CallRecord.model_validate(raw)
    transcript = record.transcript or []
    audio, media = audio_url(record)
    return page(
        request,
        "call.html",
        {
            "viewer": viewer,
            "record": record,
            "audio": audio,
            "turns": list(zip(transcript, turn_latencies(transcript), strict=True)),
            "latency_chart": charts.stage_latencies(record.latency),
            "events": [
                {"at": event.received_at, "type": event.event.get("type"), "body": event.event}
                for event in stored
            ],
            "metadata": json.dumps(record.metadata, indent=2, sort_keys=True),
            "replayed": request.query_params.get("replayed"),
        },
        media=media,
    )


def call_json(request: Request, viewer: Viewer) -> Response:
    try:
        call, raw = _record(request, viewer)
    except NotFound as exc:
        return page(request, "message.html", {"viewer": viewer, "message": exc.detail}, 404)
    return secured(
        Response(
            json.dumps(raw, indent=2),
            media_type="application/json",
            headers={"content-disposition": f'attachment; filename="{call.id}.json"'},
        )
    )


def replay_call(request: Request, viewer: Viewer, form: FormData) -> Response:
    """Assemble the call again from its stored events (as `callwatch replay CALL_ID`)."""
    services = services_of(request)
    try:
        with transaction(services.runtime.sessions) as session:
            call = store.find(session, viewer.org_id, path_param(request, "call_id"))
            ready = replay.replay(session, [call.id], services.runtime.clock())
            call_id = call.id
    except NotFound as exc:
        return page(request, "message.html", {"viewer": viewer, "message": exc.detail}, 404)
    if ready:
        services.producer.assemble(ready)
    outcome = "yes" if ready else "no"
    return RedirectResponse(f"/calls/{call_id}?replayed={outcome}", status_code=303)


def confirm_delete(request: Request, viewer: Viewer) -> Response:
    try:
        call, _ = _record(request, viewer)
    except NotFound as exc:
        return page(request, "message.html", {"viewer": viewer, "message": exc.detail}, 404)
    context = {
        "viewer": viewer,
        "title": f"Delete the call {call.id}?",
        "consequence": "Its record, events, deliveries, alerts and archived recording are "
        "deleted and its stats no longer count it; subscribers to call.deleted are told. There "
        "is no undo.",
        "action": f"/calls/{call.id}/delete",
        "button": "Delete call",
        "back": f"/calls/{call.id}",
    }
    return page(request, "confirm.html", context)


def delete_call(request: Request, viewer: Viewer, form: FormData) -> Response:
    """As `DELETE /api/calls/{call_id}` (docs/data.md#erasure)."""
    call_id = path_param(request, "call_id")
    try:
        erasures.delete_call(
            services_of(request).runtime,
            viewer.org_id,
            call_id,
            lambda ids: send_deliveries(request, ids),
        )
    except NotFound as exc:
        return page(request, "message.html", {"viewer": viewer, "message": exc.detail}, 404)
    return RedirectResponse("/calls", status_code=303)
