"""The query API over call records (org API key); every query is scoped to the caller's org."""

from typing import Any

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from callwatch.calls import store
from callwatch.db import transaction
from callwatch.model.records import CallRecord
from callwatch.pipeline import quarantine
from callwatch.query import call_stats, export, queries, stats
from callwatch.query.filters import parse
from callwatch.validation import parse_body, path_param, read_body
from callwatch.web.auth import require_org
from callwatch.web.services import Services


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _json(value: BaseModel | list[Any] | dict[str, Any]) -> JSONResponse:
    if isinstance(value, BaseModel):
        return JSONResponse(value.model_dump(mode="json"))
    return JSONResponse(value)


def list_calls(request: Request) -> Response:
    org_id = require_org(request)
    query = parse(queries.ListQuery, request.query_params)
    with transaction(_services(request).runtime.sessions) as session:
        listed = queries.page(session, org_id, query)
    return Response(listed.json(), media_type="application/json")


def get_call(request: Request) -> JSONResponse:
    org_id = require_org(request)
    with transaction(_services(request).runtime.sessions) as session:
        call = store.find(session, org_id, path_param(request, "call_id"))
        return _json(queries.record_json(session, call))


async def search_calls(request: Request) -> JSONResponse:
    body = parse_body(queries.SearchBody, await read_body(request))
    return await run_in_threadpool(_search, request, body)


def _search(request: Request, body: queries.SearchBody) -> JSONResponse:
    org_id = require_org(request)
    with transaction(_services(request).runtime.sessions) as session:
        return _json(queries.search(session, org_id, body.call_ids))


def call_events(request: Request) -> JSONResponse:
    org_id = require_org(request)
    with transaction(_services(request).runtime.sessions) as session:
        found = queries.events(session, org_id, path_param(request, "call_id"))
    return _json([event.model_dump(mode="json") for event in found])


def agent_call_stats(request: Request) -> JSONResponse:
    org_id = require_org(request)
    query = parse(queries.ListQuery, request.query_params).model_copy(
        update={"agent_id": path_param(request, "agent_id")}
    )
    with transaction(_services(request).runtime.sessions) as session:
        listed = queries.page(session, org_id, query.model_copy(update={"include": ["transcript"]}))
    views = [call_stats.agent_call(CallRecord.model_validate_json(item)) for item in listed.items]
    return _json([view.model_dump(mode="json") for view in views])


def call_aggregates(request: Request) -> JSONResponse:
    org_id = require_org(request)
    query = parse(stats.StatsQuery, request.query_params)
    return _json(stats.compute(_services(request).runtime.sessions, org_id, query))


def export_calls(request: Request) -> StreamingResponse:
    org_id = require_org(request)
    query = parse(export.ExportQuery, request.query_params)
    chunks = export.stream(_services(request).runtime.sessions, org_id, query)
    filename = f"calls.{'csv' if query.format == 'csv' else 'ndjson'}"
    return StreamingResponse(
        chunks,
        media_type=export.media_type(query),
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


def quarantined_events(request: Request) -> JSONResponse:
    org_id = require_org(request)
    query = parse(quarantine.QuarantineQuery, request.query_params)
    with transaction(_services(request).runtime.sessions) as session:
        return _json(quarantine.page(session, org_id, query))
