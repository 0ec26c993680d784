"""`/subscriptions`: the org's endpoints, each one's delivery log with status codes and attempts,
"retry now", re-sending since a time, secret rotation; adding, editing (URL, events, rate
limit), disabling, enabling and deleting (after a confirm page) an endpoint.

Each action calls what its `/api/subscriptions` endpoint calls (downstream.subscriptions and
delivery_log), so the same checks apply (the SSRF guard on the URL, a disabled endpoint's 409).
"""

import json
from datetime import timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from callwatch.dashboard.render import page
from callwatch.db import transaction
from callwatch.downstream import delivery_log, subscriptions
from callwatch.downstream.delivery_log import DeliveryQuery, ResendRange
from callwatch.downstream.endpoints import send_deliveries, vet_target
from callwatch.downstream.subscriptions import EVENT_TYPES, SubscriptionIn, SubscriptionPatch
from callwatch.errors import RequestError
from callwatch.validation import parse_body, path_param
from callwatch.web.services import services_of
from callwatch.web.sessions import Viewer

LOG_SIZE = 50


def _listing(request: Request, viewer: Viewer, **extra: Any) -> Response:
    runtime = services_of(request).runtime
    status_code = extra.pop("status_code", 200)
    with transaction(runtime.sessions) as session:
        now = runtime.clock()
        items = [subscriptions.view(s, now) for s in subscriptions.list_for(session, viewer.org_id)]
    context = {"viewer": viewer, "subscriptions": items, "event_types": EVENT_TYPES}
    return page(request, "subscriptions.html", context | extra, status_code)


def subscriptions_page(request: Request, viewer: Viewer) -> Response:
    return _listing(request, viewer)


def create(request: Request, viewer: Viewer, form: FormData) -> Response:
    runtime = services_of(request).runtime
    body = {
        "url": str(form.get("url", "")).strip(),
        "event_types": [str(value) for value in form.getlist("event_types")],
        "description": str(form.get("description", "")).strip() or None,
    }
    try:
        data = parse_body(SubscriptionIn, json.dumps(body).encode())
        vet_target(runtime, data.url)
        with transaction(runtime.sessions) as session:
            now = runtime.clock()
            created, secret = subscriptions.create(session, runtime.vault, viewer.org_id, data, now)
            view = subscriptions.view(created, now)
    except RequestError as exc:
        return _listing(
            request, viewer, error=exc.detail, entered=body, status_code=exc.status_code
        )
    return _listing(request, viewer, created=view, secret=secret, status_code=201)


def _log(request: Request, viewer: Viewer, **extra: Any) -> Response:
    runtime = services_of(request).runtime
    status_code = extra.pop("status_code", 200)
    subscription_id = path_param(request, "subscription_id")
    try:
        with transaction(runtime.sessions) as session:
            found = subscriptions.get(session, viewer.org_id, subscription_id)
            view = subscriptions.view(found, runtime.clock())
            deliveries = delivery_log.deliveries_page(
                session, viewer.org_id, subscription_id, DeliveryQuery(limit=LOG_SIZE)
            )
    except RequestError as exc:
        message = {"viewer": viewer, "message": exc.detail}
        return page(request, "message.html", message, exc.status_code)
    since = (runtime.clock() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    context = {
        "viewer": viewer,
        "subscription": view,
        "deliveries": deliveries,
        "since": since,
        "event_types": EVENT_TYPES,
    }
    return page(request, "subscription.html", context | extra, status_code)


def subscription_page(request: Request, viewer: Viewer) -> Response:
    return _log(request, viewer)


def retry(request: Request, viewer: Viewer, form: FormData) -> Response:
    runtime = services_of(request).runtime
    subscription_id = path_param(request, "subscription_id")
    delivery_id = path_param(request, "delivery_id")
    try:
        with transaction(runtime.sessions) as session:
            reset = delivery_log.resend_one(
                session, viewer.org_id, subscription_id, delivery_id, runtime.clock()
            )
    except RequestError as exc:
        return _log(request, viewer, error=exc.detail, status_code=exc.status_code)
    if reset:
        send_deliveries(request, [delivery_id])
    return RedirectResponse(f"/subscriptions/{subscription_id}?queued={int(reset)}", 303)


def resend_since(request: Request, viewer: Viewer, form: FormData) -> Response:
    runtime = services_of(request).runtime
    subscription_id = path_param(request, "subscription_id")
    window = {"from": str(form.get("from", "")), "to": runtime.clock().isoformat()}
    try:
        chosen_range = parse_body(ResendRange, json.dumps(window).encode())
        with transaction(runtime.sessions) as session:
            chosen = delivery_log.resend_range(
                session, viewer.org_id, subscription_id, chosen_range, runtime.clock()
            )
    except RequestError as exc:
        return _log(request, viewer, error=exc.detail, status_code=exc.status_code)
    send_deliveries(request, chosen)
    return RedirectResponse(f"/subscriptions/{subscription_id}?queued={len(chosen)}", 303)


def rotate(request: Request, viewer: Viewer, form: FormData) -> Response:
    runtime = services_of(request).runtime
    try:
        with transaction(runtime.sessions) as session:
            _, secret = subscriptions.rotate_secret(
                session,
                runtime.vault,
                viewer.org_id,
                path_param(request, "subscription_id"),
                runtime.clock(),
                runtime.settings.secret_rotation_overlap_s,
            )
    except RequestError as exc:
        return _log(request, viewer, error=exc.detail, status_code=exc.status_code)
    return _log(request, viewer, secret=secret)


def edit_of(form: FormData) -> dict[str, Any]:
    """The API's PATCH body for the edit form: URL, events and rate limit (blank: none)."""
    per_second = str(form.get("per_second", "")).strip()
    burst = str(form.get("burst", "")).strip()
    limit = {"per_second": per_second} | ({"burst": burst} if burst else {})
    return {
        "url": str(form.get("url", "")).strip(),
        "event_types": [str(value) for value in form.getlist("event_types")],
        "rate_limit": limit if per_second else None,
    }


def _patch(request: Request, viewer: Viewer, body: dict[str, Any]) -> Response:
    """Change the path's subscription as `PATCH /api/subscriptions/{id}` does with `body`."""
    runtime = services_of(request).runtime
    subscription_id = path_param(request, "subscription_id")
    try:
        changes = parse_body(SubscriptionPatch, json.dumps(body).encode())
        if changes.url is not None:
            vet_target(runtime, changes.url)
        with transaction(runtime.sessions) as session:
            subscriptions.update_subscription(
                session, viewer.org_id, subscription_id, changes, runtime.clock()
            )
    except RequestError as exc:
        return _log(request, viewer, error=exc.detail, status_code=exc.status_code)
    return RedirectResponse(f"/subscriptions/{subscription_id}", 303)


def edit(request: Request, viewer: Viewer, form: FormData) -> Response:
    return _patch(request, viewer, edit_of(form))


def set_enabled(request: Request, viewer: Viewer, form: FormData) -> Response:
    return _patch(request, viewer, {"enabled": form.get("enabled") == "true"})


def confirm_delete(request: Request, viewer: Viewer) -> Response:
    runtime = services_of(request).runtime
    try:
        with transaction(runtime.sessions) as session:
            found = subscriptions.get(
                session, viewer.org_id, path_param(request, "subscription_id")
            )
            url, subscription_id = found.url, found.id
    except RequestError as exc:
        message = {"viewer": viewer, "message": exc.detail}
        return page(request, "message.html", message, exc.status_code)
    context = {
        "viewer": viewer,
        "title": f"Delete the endpoint {url}?",
        "consequence": "Its deliveries and their log go with it.",
        "action": f"/subscriptions/{subscription_id}/delete",
        "button": "Delete endpoint",
        "back": f"/subscriptions/{subscription_id}",
    }
    return page(request, "confirm.html", context)


def delete(request: Request, viewer: Viewer, form: FormData) -> Response:
    runtime = services_of(request).runtime
    try:
        with transaction(runtime.sessions) as session:
            subscriptions.delete(session, viewer.org_id, path_param(request, "subscription_id"))
    except RequestError as exc:
        return _log(request, viewer, error=exc.detail, status_code=exc.status_code)
    return RedirectResponse("/subscriptions", 303)
