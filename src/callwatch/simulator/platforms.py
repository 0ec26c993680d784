"""The simulated platforms: each one's webhooks, signing, call ids and detail API, by name."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callwatch.records import Recording
from callwatch.simulator import atoms, burki, fixa, generic, origins
from callwatch.simulator.calls import SimCall

# (call, embed_detail) -> (when the platform sends it, body) for each webhook, in sending order
Webhooks = Callable[[SimCall, bool], list[tuple[datetime, dict[str, Any]]]]
# (secret, body, now) -> (the bytes to post, their headers)
Signer = Callable[[str, dict[str, Any], float], tuple[bytes, dict[str, str]]]
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
    call_id: Callable[[SimCall], str] = own_call_id
    api: Mapping[str, Endpoint] = field(default_factory=dict)
    # The platform whose calls this one analyses (fixa): those calls are played too, into a
    # source of their own, so there is something to enrich.
    analyses: str | None = None

    def __post_init__(self) -> None:
        for path in self.api:
            if not path.startswith("/") or "{call_id}" not in path:
                raise ValueError(f"API route {path!r} must start with / and hold {{call_id}}")


PLATFORMS: Mapping[str, Platform] = {
    "generic": Platform(
        webhooks=generic.timed_webhooks,
        secret_name="webhook_secret",  # noqa: S106 - a credential's name
        sign=generic.signed_request,
        api={"/calls/{call_id}": generic.detail},
    ),
    "atoms": Platform(
        webhooks=atoms.timed_webhooks,
        secret_name="signing_secret",  # noqa: S106 - a credential's name
        sign=atoms.signed_request,
        call_id=atoms.call_id,
        api={"/conversation/{call_id}": atoms.conversation},
    ),
    "burki": Platform(
        webhooks=burki.timed_webhooks,
        secret_name=None,
        call_id=burki.call_id,
        api={
            "/api/v1/calls/sid/{call_id}": burki.call_json,
            "/api/v1/calls/sid/{call_id}/recordings": burki.recordings,
        },
    ),
    "origins": Platform(
        webhooks=origins.timed_webhooks,
        secret_name=None,
        call_id=origins.task_id,  # Dialflo's call_details is keyed by the task
        api={"/call_details/{call_id}": origins.call_details},
    ),
    "fixa": Platform(webhooks=fixa.timed_webhooks, secret_name=None, analyses="generic"),
}
