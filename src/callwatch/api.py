"""The read API over call records (org API key); every query is scoped to the caller's org."""

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import JSONResponse

from callwatch import calls
from callwatch.auth import require_org
from callwatch.db import transaction
from callwatch.events import CallStatus
from callwatch.records import CallRecord
from callwatch.services import Services
from callwatch.tables import Call
from callwatch.validation import parse_query


class ListQuery(BaseModel):
    skip: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=1000)
    status: list[CallStatus] = Field(default_factory=list)
    agent_id: str | None = None
    include: list[str] = Field(default_factory=list)


def _json(record: CallRecord, *, transcript: bool = True) -> dict[str, Any]:
    return record.model_dump(mode="json", exclude=None if transcript else {"transcript"})


def get_call(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    org_id = require_org(request)
    with transaction(services.runtime.sessions) as session:
        call = calls.find(session, org_id, request.path_params["call_id"])
        record = calls.record_of(session, call)
    return JSONResponse(_json(record))


def list_calls(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    org_id = require_org(request)
    params: dict[str, Any] = dict(request.query_params)
    params["status"] = request.query_params.getlist("status")
    params["include"] = request.query_params.getlist("include")
    if "assistant_id" in params and "agent_id" not in params:
        params["agent_id"] = params.pop("assistant_id")
    query = parse_query(ListQuery, params)
    where = [Call.org_id == org_id]
    if query.status:
        where.append(Call.status.in_([status.value for status in query.status]))
    if query.agent_id:
        where.append(Call.agent_id == query.agent_id)
    with transaction(services.runtime.sessions) as session:
        total = session.scalar(select(func.count()).select_from(Call).where(*where)) or 0
        rows = session.scalars(
            select(Call)
            .where(*where)
            .order_by(Call.started_at.desc(), Call.id.desc())
            .offset(query.skip)
            .limit(query.limit)
        ).all()
        items = [
            _json(calls.record_of(session, row), transcript="transcript" in query.include)
            for row in rows
        ]
    return JSONResponse({"items": items, "total": total, "skip": query.skip, "limit": query.limit})
