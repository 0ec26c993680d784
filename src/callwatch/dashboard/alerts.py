"""`/alerts`: the org's alert rules (add, enable or disable, delete) and the alerts they fired.

A rule from the form is parsed exactly as `POST /api/alert-rules` parses its body, so a broken
expression gets the API's own message, shown beside the form.
"""

import json
from typing import Any, get_args

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from callwatch.alerts import rules
from callwatch.alerts.rules import AlertQuery, RuleIn, RulePatch
from callwatch.alerts.windows import Metric
from callwatch.dashboard.render import page
from callwatch.db import transaction
from callwatch.errors import NotFound, RequestError
from callwatch.runtime import utcnow
from callwatch.validation import parse_body, path_param
from callwatch.web.services import services_of
from callwatch.web.sessions import Viewer

OPS = (">", ">=", "<", "<=")


def _page(
    request: Request,
    viewer: Viewer,
    *,
    error: str | None = None,
    entered: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    with transaction(services_of(request).runtime.sessions) as session:
        listed = rules.list_rules(session, viewer.org_id)
        fired = rules.list_alerts(session, viewer.org_id, AlertQuery(limit=50))
    return page(
        request,
        "alerts.html",
        {
            "viewer": viewer,
            "rules": listed,
            "alerts": fired.items,
            "error": error,
            "entered": entered or {},
            "metrics": get_args(Metric),
            "ops": OPS,
        },
        status_code,
    )


def alerts(request: Request, viewer: Viewer) -> Response:
    return _page(request, viewer)


def rule_of(form: FormData) -> dict[str, Any]:
    """The API's JSON body for the form's fields (blank fields left out)."""
    given = {name: str(value).strip() for name, value in form.items() if name != "csrf_token"}
    body: dict[str, Any] = {"name": given.get("name", ""), "kind": given.get("kind", "call")}
    for name in ("agent_id", "source"):
        if given.get(name):
            body[name] = given[name]
    if body["kind"] == "window":
        body["window"] = {
            name: given[name]
            for name in ("metric", "minutes", "op", "threshold", "min_calls")
            if given.get(name)
        }
    else:
        body["expression"] = given.get("expression", "")
    return body


def create_rule(request: Request, viewer: Viewer, form: FormData) -> Response:
    entered = {name: str(value) for name, value in form.items() if name != "csrf_token"}
    try:
        data = parse_body(RuleIn, json.dumps(rule_of(form)).encode())
        with transaction(services_of(request).runtime.sessions) as session:
            rules.create_rule(session, viewer.org_id, data, utcnow())
    except RequestError as exc:
        return _page(
            request, viewer, error=exc.detail, entered=entered, status_code=exc.status_code
        )
    return RedirectResponse("/alerts", status_code=303)


def toggle_rule(request: Request, viewer: Viewer, form: FormData) -> Response:
    patch = RulePatch(enabled=form.get("enabled") == "true")
    try:
        with transaction(services_of(request).runtime.sessions) as session:
            rules.update_rule(
                session, viewer.org_id, path_param(request, "rule_id"), patch, utcnow()
            )
    except NotFound as exc:
        return _page(request, viewer, error=exc.detail, status_code=404)
    return RedirectResponse("/alerts", status_code=303)


def delete_rule(request: Request, viewer: Viewer, form: FormData) -> Response:
    try:
        with transaction(services_of(request).runtime.sessions) as session:
            rules.delete_rule(session, viewer.org_id, path_param(request, "rule_id"))
    except NotFound as exc:
        return _page(request, viewer, error=exc.detail, status_code=404)
    return RedirectResponse("/alerts", status_code=303)
