"""What a simulated platform is: its webhooks, signing, call ids and detail API answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callwatch.model.records import Recording
from callwatch.simulator.calls import SimCall

# (call, embed_detail) -> (when the platform sends it, body) for each webhook, in sending order
Webhooks = Callable[[SimCall, bool], list[tuple[datetime, dict[str, Any]]]]
# (secret, body, now) -> (the bytes to post, their headers)
Signer = Callable[[str, dict[str, Any], float], tuple[bytes, dict[str, str]]]
# (secret, body, now, the webhook URL the platform was given) -> (the bytes to post, their headers)
UrlSigner = Callable[[str, dict[str, Any], float, str], tuple[bytes, dict[str, str]]]
# (call, its recording as the server decided) -> the JSON body the route answers with
Endpoint = Callable[[SimCall, Recording], Any]


def own_call_id(call: SimCall) -> str:
    return call.call_id


def unsigned(secret: str, body: dict[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
    """Plain JSON, for platforms that do not sign their webhooks."""
    return json.dumps(body, separators=(",", ":")).encode(), {"content-type": "application/json"}


@dataclass(frozen=True, kw_only=True)
class Platform:
    """How one platform sends a call's webhooks and answers its API about the call.

    `api` maps route templates, relative to the platform's base URL and holding `{call_id}`
    (the platform's id for the call, from `call_id`, which takes any SimCall), to what the
    route answers. `secret_name` is the source credential the platform signs with (None: it
    does not sign).
    """

    webhooks: Webhooks
    secret_name: str | None
    sign: Signer = unsigned
    # Replaces `sign` for a platform whose signature covers the URL it posts to (Twilio).
    sign_url: UrlSigner | None = None
    call_id: Callable[[SimCall], str] = own_call_id
    api: Mapping[str, Endpoint] = field(default_factory=dict)
    # The platform whose calls this one analyses (fixa): those calls are played too, into a
    # source of their own, so there is something to enrich.
    analyses: str | None = None

    def __post_init__(self) -> None:
        for path in self.api:
            if not path.startswith("/") or "{call_id}" not in path:
                raise ValueError(f"API route {path!r} must start with / and hold {{call_id}}")
