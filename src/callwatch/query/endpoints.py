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
from callwatch.web.operations import ListOf, Operation
from callwatch.web.services import services_of


def _json(value: BaseModel | list[Any] | dict[str, Any]) -> JSONResponse:
    if isinstance(value, BaseModel):
        return JSONResponse(value.model_dump(mode="json"))
    return JSONResponse(value)


def list_calls(request: Request) -> Response:
    org_id = require_org(request)
    query = parse(queries.ListQuery, request.query_params)
    with transaction(services_of(request).runtime.sessions) as session:
        listed = queries.page(session, org_id, query)
    return Response(listed.json(), media_type="application/json")


def get_call(request: Request) -> JSONResponse:
    org_id = require_org(request)
    with transaction(services_of(request).runtime.sessions) as session:
        call = store.find(session, org_id, path_param(request, "call_id"))
        return _json(queries.record_json(session, call))


async def search_calls(request: Request) -> JSONResponse:
    body = parse_body(queries.SearchBody, await read_body(request))
    return await run_in_threadpool(_search, request, body)


def _search(request: Request, body: queries.SearchBody) -> JSONResponse:
    org_id = require_org(request)
    with transaction(services_of(request).runtime.sessions) as session:
        return _json(queries.search(session, org_id, body.call_ids))


def call_events(request: Request) -> JSONResponse:
    org_id = require_org(request)
    with transaction(services_of(request).runtime.sessions) as session:
        found = queries.events(session, org_id, path_param(request, "call_id"))
    return _json([event.model_dump(mode="json") for event in found])


def agent_call_stats(request: Request) -> JSONResponse:
    org_id = require_org(request)
    query = parse(queries.ListQuery, request.query_params).model_copy(
        update={"agent_id": path_param(request, "agent_id")}
    )
    with transaction(services_of(request).runtime.sessions) as session:
        listed = queries.page(session, org_id, query.model_copy(update={"include": ["transcript"]}))
    views = [call_stats.agent_call(CallRecord.model_validate_json(item)) for item in listed.items]
    return _json([view.model_dump(mode="json") for view in views])


def call_aggregates(request: Request) -> JSONResponse:
    org_id = require_org(request)
    query = parse(stats.StatsQuery, request.query_params)
    runtime = services_of(request).runtime
    return _json(stats.compute(runtime.sessions, org_id, query, runtime.settings.stats_exact_up_to))


def export_calls(request: Request) -> StreamingResponse:
    org_id = require_org(request)
    query = parse(export.ExportQuery, request.query_params)
    chunks = export.stream(services_of(request).runtime.sessions, org_id, query)
    filename = f"calls.{'csv' if query.format == 'csv' else 'ndjson'}"
    return StreamingResponse(
        chunks,
        media_type=export.media_type(query),
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


def quarantined_events(request: Request) -> JSONResponse:
    org_id = require_org(request)
    query = parse(quarantine.QuarantineQuery, request.query_params)
    with transaction(services_of(request).runtime.sessions) as session:
        return _json(quarantine.page(session, org_id, query))


ENDPOINTS = [
    Operation(
        list_calls,
        "get",
        "/api/calls",
        "List calls, newest first",
        "calls",
        query=queries.ListQuery,
        response=queries.CallPage,
        description="Items are summaries (no transcript) unless `include=transcript`. Page with "
        "`skip`+`limit` or `page`+`limit`; `total` counts every call the filters match.",
    ),
    Operation(
        export_calls,
        "get",
        "/api/calls/export",
        "Export every matching call",
        "calls",
        query=export.ExportQuery,
        response={
            "application/x-ndjson": "one full record per line",
            "text/csv": "a summary row",
        },
    ),
    Operation(
        search_calls,
        "post",
        "/api/calls/search",
        "Fetch up to 100 calls by id",
        "calls",
        body=queries.SearchBody,
        response=queries.SearchResult,
    ),
    Operation(
        get_call,
        "get",
        "/api/calls/{call_id}",
        "Get one call's record",
        "calls",
        response=CallRecord,
        description="`call_id` is callwatch's id or the platform's call id.",
    ),
    Operation(
        call_events,
        "get",
        "/api/calls/{call_id}/events",
        "The call's stored raw events, oldest first",
        "calls",
        response=ListOf(queries.StoredEvent),
    ),
    Operation(
        agent_call_stats,
        "get",
        "/api/agents/{agent_id}/call_stats",
        "An agent's calls with per-stage data (reference 000's shape)",
        "calls",
        query=queries.ListQuery,
        response=ListOf(call_stats.AgentCall),
    ),
    Operation(
        call_aggregates,
        "get",
        "/api/stats",
        "Aggregates over the matching calls",
        "stats",
        query=stats.StatsQuery,
        response=stats.StatsResult,
    ),
    Operation(
        quarantined_events,
        "get",
        "/api/quarantine",
        "Events that could not be applied, the latest first",
        "calls",
        query=quarantine.QuarantineQuery,
        response=quarantine.QuarantinePage,
        description="An accepted event that a worker could not apply is kept here with the "
        "reason, never dropped; `callwatch replay --quarantined` applies it again once the "
        "cause is fixed, and it leaves this list when it applies.",
    ),
]
