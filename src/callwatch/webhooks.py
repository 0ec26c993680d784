"""POST /webhooks/{token}: read the request, have intake verify, parse and store it, reply 202."""

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from callwatch import intake_counts
from callwatch.errors import PayloadTooLarge
from callwatch.intake import Incoming
from callwatch.intake_client import error_of
from callwatch.services import Services
from callwatch.validation import path_param


class WebhookReply(BaseModel):
    status: Literal["accepted", "duplicate"] = "duplicate"
    events: list[str] | None = Field(None, description="the stored event ids; absent if duplicate")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _public_url(base: str, request: Request) -> str:
    query: str = request.scope["query_string"].decode("latin-1")
    path: str = request.scope["path"]
    return base.rstrip("/") + path + (f"?{query}" if query else "")


async def receive(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.runtime.settings
    token = path_param(request, "webhook_token")
    body = await _read_body(request, settings.max_body_bytes)
    incoming = Incoming.model_construct(  # typed already: the intake process validates it
        token=token,
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
        client_ip=request.client.host if request.client else None,
        url=_public_url(settings.public_url, request),
        received_at=datetime.now(UTC),
    )
    outcome = await services.intake.submit(incoming, body)
    if outcome.provider is not None:
        request.scope[intake_counts.PROVIDER] = outcome.provider
    if outcome.error is not None:
        raise error_of(outcome)
    reply = WebhookReply(status=outcome.status or "duplicate", events=outcome.events or None)
    request.scope[intake_counts.OUTCOME] = reply.status
    return Response(reply.model_dump_json(exclude_none=True), 202, media_type="application/json")
