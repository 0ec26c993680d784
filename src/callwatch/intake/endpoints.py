"""POST /webhooks/{token}: read the request, have intake verify, parse and store it, reply 202."""

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from callwatch.intake import counts
from callwatch.providers.base import RequestHeaders, WebhookRequest
from callwatch.providers.generic import GenericEnvelope
from callwatch.ratelimits import bucket_key
from callwatch.validation import path_param, read_limited
from callwatch.web.operations import Operation
from callwatch.web.services import Services


class WebhookReply(BaseModel):
    status: Literal["accepted", "duplicate"] = "duplicate"
    events: list[str] | None = Field(None, description="the stored event ids; absent if duplicate")


class WebhookEndpoint:
    """A plain ASGI app, not a Starlette endpoint: Starlette's Request and Response objects took
    ~20 % of the web process's CPU per webhook (bench/README.md)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services = scope["app"].state.services
        settings = services.runtime.settings
        token = path_param(scope, "webhook_token")
        source = await services.intake.sources.lookup(token)
        scope[counts.PROVIDER] = source.provider
        scope[counts.SOURCE] = (source.org_id, source.id)
        if limit := source.settings.get("rate_limit"):
            key = bucket_key("source", source.id)
            await services.limits.admit(key, limit["per_second"], limit["burst"])
        body = await read_limited(scope, receive, settings.max_body_bytes)
        headers = RequestHeaders(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
        )
        client = scope.get("client")
        request = WebhookRequest(
            body=body,
            headers=headers,
            content_type=headers.get("content-type", ""),
            client_ip=client[0] if client else None,
            url=_public_url(settings.public_url, scope),
            received_at=datetime.now(UTC),
        )
        events = await services.intake.submit(source, request)
        reply = WebhookReply(status="accepted" if events else "duplicate", events=events or None)
        scope[counts.OUTCOME] = reply.status
        content = reply.model_dump_json(exclude_none=True).encode()
        await send({"type": "http.response.start", "status": 202, "headers": _headers(content)})
        await send({"type": "http.response.body", "body": content})


def _headers(content: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(content))]


def _public_url(base: str, scope: Scope) -> str:
    query: str = scope["query_string"].decode("latin-1")
    path: str = scope["path"]
    return base.rstrip("/") + path + (f"?{query}" if query else "")


WEBHOOK = Operation(
    counts.Counted(WebhookEndpoint()),
    "post",
    "/webhooks/{webhook_token}",
    "Receive a platform's webhook",
    "intake",
    auth=None,
    body=GenericEnvelope,
    ok=202,
    response=WebhookReply,
    errors=(401, 404, 410, 413, 429),
    description="The body is whatever the source's platform sends; shown here is the "
    "`generic` provider's event (Standard Webhooks signed). 202 only after the event is "
    "stored durably. 404 for an unknown or deleted source's token (or a previous token after "
    "its rotation overlap), 410 for a disabled source's, 429 with `Retry-After` past the "
    "source's `settings.rate_limit`.",
)
