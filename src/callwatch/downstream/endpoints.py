"""HTTP endpoints for subscriptions and their deliveries (org API key, org-scoped)."""

import logging
from typing import Any

from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callwatch.db import transaction
from callwatch.downstream import delivery_log, subscriptions
from callwatch.downstream.delivery_log import DeliveryPage, DeliveryQuery, ResendRange, Resent
from callwatch.downstream.subscriptions import (
    SecretRotated,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionPatch,
    SubscriptionView,
)
from callwatch.outbound import ssrf
from callwatch.runtime import Runtime
from callwatch.validation import parse_body, parse_query, path_param
from callwatch.web.auth import require_org
from callwatch.web.operations import Operation, with_body
from callwatch.web.services import Services

log = logging.getLogger("callwatch.web")
BASE = "/api/subscriptions"
ONE = BASE + "/{subscription_id}"
TAG = "subscriptions"


def _runtime(request: Request) -> Runtime:
    services: Services = request.app.state.services
    return services.runtime


def _json(value: BaseModel, status_code: int = 200) -> JSONResponse:
    return JSONResponse(value.model_dump(mode="json"), status_code=status_code)


def vet_target(rt: Runtime, url: str) -> None:
    """Before the transaction: the URL's DNS lookup must not hold the database."""
    ssrf.vet_url(url, ssrf.Guard(rt.settings.allow_private_targets))


def send_deliveries(request: Request, delivery_ids: list[str]) -> None:
    """Send now; if Redis is unreachable the sweeper finds them due within sweep_interval_s."""
    services: Services = request.app.state.services
    try:
        services.producer.deliver(delivery_ids)
    except RedisError as exc:
        log.warning("re-send left to the sweeper", extra={"error": str(exc)})


def create(request: Request, body: bytes) -> Response:
    org_id = require_org(request)
    data = parse_body(SubscriptionIn, body)
    rt = _runtime(request)
    vet_target(rt, data.url)
    with transaction(rt.sessions) as session:
        now = rt.clock()
        subscription, secret = subscriptions.create(session, rt.vault, org_id, data, now)
        view = subscriptions.view(subscription, now)
    return _json(SubscriptionCreated(**view.model_dump(), secret=secret), 201)


def list_all(request: Request) -> Response:
    org_id = require_org(request)
    rt = _runtime(request)
    with transaction(rt.sessions) as session:
        now = rt.clock()
        items = [subscriptions.view(s, now) for s in subscriptions.list_for(session, org_id)]
    return _json(SubscriptionList(items=items))


def get_one(request: Request) -> Response:
    org_id = require_org(request)
    rt = _runtime(request)
    with transaction(rt.sessions) as session:
        found = subscriptions.get(session, org_id, path_param(request, "subscription_id"))
        return _json(subscriptions.view(found, rt.clock()))


def patch(request: Request, body: bytes) -> Response:
    org_id = require_org(request)
    changes = parse_body(SubscriptionPatch, body)
    rt = _runtime(request)
    if changes.url is not None:
        vet_target(rt, changes.url)
    with transaction(rt.sessions) as session:
        now = rt.clock()
        subscription_id = path_param(request, "subscription_id")
        changed = subscriptions.update_subscription(session, org_id, subscription_id, changes, now)
        return _json(subscriptions.view(changed, now))


def delete(request: Request) -> Response:
    org_id = require_org(request)
    with transaction(_runtime(request).sessions) as session:
        subscriptions.delete(session, org_id, path_param(request, "subscription_id"))
    return Response(status_code=204)


def rotate_secret(request: Request) -> Response:
    org_id = require_org(request)
    rt = _runtime(request)
    with transaction(rt.sessions) as session:
        subscription, secret = subscriptions.rotate_secret(
            session,
            rt.vault,
            org_id,
            path_param(request, "subscription_id"),
            rt.clock(),
            rt.settings.secret_rotation_overlap_s,
        )
        until = subscriptions.view(subscription, rt.clock()).previous_secret_expires_at
    return _json(SecretRotated(id=subscription.id, secret=secret, previous_secret_expires_at=until))


def list_deliveries(request: Request) -> Response:
    org_id = require_org(request)
    params: dict[str, Any] = dict(request.query_params)
    for name in ("state", "include"):
        if name in request.query_params:
            values = request.query_params.getlist(name)
            params[name] = [part for value in values for part in value.split(",")]
    query = parse_query(DeliveryQuery, params)
    with transaction(_runtime(request).sessions) as session:
        subscription_id = path_param(request, "subscription_id")
        return _json(delivery_log.deliveries_page(session, org_id, subscription_id, query))


def resend_one(request: Request) -> Response:
    org_id = require_org(request)
    rt = _runtime(request)
    subscription_id = path_param(request, "subscription_id")
    delivery_id = path_param(request, "delivery_id")
    with transaction(rt.sessions) as session:
        reset = delivery_log.resend_one(session, org_id, subscription_id, delivery_id, rt.clock())
    if reset:
        send_deliveries(request, [delivery_id])
    return _json(Resent(queued=int(reset)), 202)


def resend_range(request: Request, body: bytes) -> Response:
    org_id = require_org(request)
    window = parse_body(ResendRange, body)
    rt = _runtime(request)
    subscription_id = path_param(request, "subscription_id")
    with transaction(rt.sessions) as session:
        chosen = delivery_log.resend_range(session, org_id, subscription_id, window, rt.clock())
    send_deliveries(request, chosen)
    return _json(Resent(queued=len(chosen)), 202)


_RESEND = (
    "Sets it pending and due now with a fresh round of attempts; the webhook-id stays the same "
    "and the attempt log continues. 409 if the subscription is disabled."
)

ENDPOINTS = [
    Operation(
        with_body(create),
        "post",
        BASE,
        "Create a subscription",
        TAG,
        body=SubscriptionIn,
        ok=201,
        response=SubscriptionCreated,
        description="The reply carries the whsec_ signing secret, once. A URL on a private, "
        "loopback, link-local or metadata address is refused (422 naming `url`).",
    ),
    Operation(list_all, "get", BASE, "List subscriptions", TAG, response=SubscriptionList),
    Operation(get_one, "get", ONE, "Get a subscription", TAG, response=SubscriptionView),
    Operation(
        with_body(patch),
        "patch",
        ONE,
        "Change a subscription",
        TAG,
        body=SubscriptionPatch,
        response=SubscriptionView,
        description="Only the fields given change; `enabled: false` cancels pending deliveries, "
        "`enabled: true` re-enables one callwatch disabled.",
    ),
    Operation(
        delete,
        "delete",
        ONE,
        "Delete a subscription and its deliveries",
        TAG,
        ok=204,
        response=None,
    ),
    Operation(
        rotate_secret,
        "post",
        ONE + "/rotate-secret",
        "Rotate the signing secret",
        TAG,
        response=SecretRotated,
        description="The new secret is shown once; the old one keeps signing alongside it "
        "(two `v1,` signatures) until `previous_secret_expires_at`.",
    ),
    Operation(
        list_deliveries,
        "get",
        ONE + "/deliveries",
        "The delivery log",
        TAG,
        query=DeliveryQuery,
        response=DeliveryPage,
        description="Newest first, each delivery with its attempts; `state` and `include` "
        "repeat or take commas.",
    ),
    Operation(
        resend_one,
        "post",
        ONE + "/deliveries/{delivery_id}/resend",
        "Re-send one delivery",
        TAG,
        ok=202,
        response=Resent,
        errors=(409,),
        description=_RESEND + " `queued` is 0 while an attempt is under way.",
    ),
    Operation(
        with_body(resend_range),
        "post",
        ONE + "/resend",
        "Re-send the deliveries created in a time range",
        TAG,
        body=ResendRange,
        ok=202,
        response=Resent,
        errors=(409,),
        description=_RESEND + f" At most {delivery_log.RESEND_LIMIT:,} per request.",
    ),
]
