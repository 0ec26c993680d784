"""`DELETE /api/calls/{call_id}`, `POST /api/erasures` and `GET /api/erasures` (design.md §4)."""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callwatch.db import transaction
from callwatch.downstream.endpoints import send_deliveries
from callwatch.retention import erasures
from callwatch.validation import parse_body, path_param, read_body
from callwatch.web.auth import require_key, require_org
from callwatch.web.operations import Operation
from callwatch.web.services import services_of

TAG = "erasure"


def delete_call(request: Request) -> Response:
    org_id = require_org(request)
    runtime = services_of(request).runtime
    call_id = path_param(request, "call_id")
    erasures.delete_call(runtime, org_id, call_id, lambda ids: send_deliveries(request, ids))
    return Response(status_code=204)


async def erase_number(request: Request) -> JSONResponse:
    body = await read_body(request)

    def erase() -> erasures.ErasureView:
        key_id, org_id = require_key(request)
        data = parse_body(erasures.ErasureIn, body)
        return erasures.erase_number(
            services_of(request).runtime,
            org_id,
            data.phone_number,
            key_id,
            lambda ids: send_deliveries(request, ids),
        )

    done = await run_in_threadpool(erase)
    return JSONResponse(done.model_dump(mode="json"), status_code=201)


def list_erasures(request: Request) -> JSONResponse:
    org_id = require_org(request)
    with transaction(services_of(request).runtime.sessions) as session:
        found = erasures.list_for(session, org_id)
    return JSONResponse(found.model_dump(mode="json"))


ENDPOINTS = [
    Operation(
        delete_call,
        "delete",
        "/api/calls/{call_id}",
        "Delete a call",
        "calls",
        ok=204,
        description="Deletes the call (by callwatch or provider id) with its events, raw "
        "bodies, deliveries, alerts, archived recording, ops stream entries and its share of "
        "the stats; subscriptions to `call.deleted` are told. docs/data.md#erasure.",
    ),
    Operation(
        erase_number,
        "post",
        "/api/erasures",
        "Erase every call of a phone number",
        TAG,
        body=erasures.ErasureIn,
        ok=201,
        response=erasures.ErasureView,
        description="Every call of the org from, to or with this number, deleted as `DELETE "
        "/api/calls/{call_id}` deletes one. The erasure is kept with its count and key, and the "
        "number only as a keyed fingerprint.",
    ),
    Operation(
        list_erasures,
        "get",
        "/api/erasures",
        "List erasures",
        TAG,
        response=erasures.ErasureList,
        description=f"The org's last {erasures.LISTED} erasures by number, newest first.",
    ),
]
