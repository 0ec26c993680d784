"""HTTP endpoints for alert rules (`/api/alert-rules`) and the alerts they fired (`/api/alerts`)."""

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callwatch.alerts import rules
from callwatch.alerts.rules import (
    AlertPage,
    AlertQuery,
    AlertView,
    RuleIn,
    RuleList,
    RulePatch,
    RuleView,
)
from callwatch.db import transaction
from callwatch.runtime import utcnow
from callwatch.validation import parse_body, parse_query, path_param, read_body
from callwatch.web.auth import require_org
from callwatch.web.operations import Operation
from callwatch.web.services import services_of

RULES, RULE = "/api/alert-rules", "/api/alert-rules/{rule_id}"
ALERTS, ALERT = "/api/alerts", "/api/alerts/{alert_id}"


def _json(value: BaseModel, status_code: int = 200) -> JSONResponse:
    return JSONResponse(value.model_dump(mode="json"), status_code=status_code)


async def rule_collection(request: Request) -> Response:
    if request.method == "POST":
        body = await read_body(request)
        return await run_in_threadpool(_create_rule, request, body)
    return await run_in_threadpool(_list_rules, request)


async def rule_item(request: Request) -> Response:
    if request.method == "PATCH":
        body = await read_body(request)
        return await run_in_threadpool(_update_rule, request, body)
    if request.method == "DELETE":
        return await run_in_threadpool(_delete_rule, request)
    return await run_in_threadpool(_get_rule, request)


def _create_rule(request: Request, body: bytes) -> Response:
    org_id = require_org(request)
    data = parse_body(RuleIn, body)
    with transaction(services_of(request).runtime.sessions) as session:
        created = rules.create_rule(session, org_id, data, utcnow())
    return _json(created, status_code=201)


def _list_rules(request: Request) -> Response:
    org_id = require_org(request)
    with transaction(services_of(request).runtime.sessions) as session:
        return _json(RuleList(items=rules.list_rules(session, org_id)))


def _get_rule(request: Request) -> Response:
    org_id = require_org(request)
    with transaction(services_of(request).runtime.sessions) as session:
        rule = rules.get_rule(session, org_id, path_param(request, "rule_id"))
        return _json(rules.view(session, rule))


def _update_rule(request: Request, body: bytes) -> Response:
    org_id = require_org(request)
    rule_id = path_param(request, "rule_id")
    patch = parse_body(RulePatch, body)
    with transaction(services_of(request).runtime.sessions) as session:
        updated = rules.update_rule(session, org_id, rule_id, patch, utcnow())
    return _json(updated)


def _delete_rule(request: Request) -> Response:
    org_id = require_org(request)
    with transaction(services_of(request).runtime.sessions) as session:
        rules.delete_rule(session, org_id, path_param(request, "rule_id"))
    return Response(status_code=204)


def list_alerts(request: Request) -> Response:
    org_id = require_org(request)
    query = parse_query(AlertQuery, dict(request.query_params))
    with transaction(services_of(request).runtime.sessions) as session:
        return _json(rules.list_alerts(session, org_id, query))


def get_alert(request: Request) -> Response:
    org_id = require_org(request)
    with transaction(services_of(request).runtime.sessions) as session:
        return _json(rules.get_alert(session, org_id, path_param(request, "alert_id")))


ENDPOINTS = [
    Operation(
        rule_collection, "get", RULES, "List the org's alert rules", "alerts", response=RuleList
    ),
    Operation(
        rule_collection,
        "post",
        RULES,
        "Add an alert rule",
        "alerts",
        body=RuleIn,
        ok=201,
        response=RuleView,
        description="A `call` rule has an `expression` tested on each assembled call; a "
        "`window` rule has a `window` measured every `CALLWATCH_WINDOW_EVAL_INTERVAL_S`. A "
        "broken expression is a 422 whose detail names the column and what was expected.",
    ),
    Operation(rule_item, "get", RULE, "Get an alert rule", "alerts", response=RuleView),
    Operation(
        rule_item,
        "patch",
        RULE,
        "Change an alert rule",
        "alerts",
        body=RulePatch,
        response=RuleView,
        description="Only the fields given change; `null` clears `agent_id` or `source`.",
    ),
    Operation(rule_item, "delete", RULE, "Delete an alert rule and its alerts", "alerts", ok=204),
    Operation(
        list_alerts,
        "get",
        ALERTS,
        "List alerts, newest first",
        "alerts",
        query=AlertQuery,
        response=AlertPage,
        description="`fired`: a call rule matched a call; `open`/`resolved`: a window rule's "
        "condition held / has cleared.",
    ),
    Operation(get_alert, "get", ALERT, "Get an alert", "alerts", response=AlertView),
]
