"""The adapter interface every platform module implements, and the request it receives."""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import httpx

from callwatch.model.events import CallEvent, CallFields
from callwatch.model.records import CallDetails

# The one name of the secret a platform signs its webhooks with, on every platform that has one.
WEBHOOK_SECRET = "webhook_secret"  # noqa: S105 - a credential's name


@dataclass(frozen=True)
class SourceConfig:
    """A source as the pipeline uses it: settings plus decrypted credentials."""

    id: str
    org_id: str
    name: str
    provider: str
    settings: dict[str, Any]
    credentials: dict[str, str]
    enabled: bool = True
    deleted: bool = False
    # Looked up by its previous webhook token: that token works until then (Unix time).
    token_until: float | None = None
    # After a rotation of a secret callwatch generated, the old one verifies too until then.
    previous_secret: str | None = None
    previous_secret_until: float = 0.0

    def webhook_secrets(self, now: float) -> list[str]:
        """The secrets a webhook may be signed with now: the current one, and the previous one
        during the rotation overlap."""
        secrets = [self.credentials[WEBHOOK_SECRET]]
        if self.previous_secret is not None and now < self.previous_secret_until:
            secrets.append(self.previous_secret)
        return secrets


class RequestHeaders(Mapping[str, str]):
    """A request's headers by case-insensitive name; the first of a repeated name wins."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, str] = {}
        for name, value in pairs:
            self._values.setdefault(name.lower(), value)

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class WebhookRequest:
    body: bytes
    headers: Mapping[str, str]
    content_type: str
    client_ip: str | None
    url: str  # as the platform addressed it: CALLWATCH_PUBLIC_URL + path + query string
    # Our clock when it arrived: the event time of events whose platform gives none.
    received_at: datetime

    @cached_property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))


@dataclass(frozen=True)
class FetchContext:
    """What the pipeline knows about a call when it asks the platform for details."""

    provider_call_id: str
    completion: dict[str, Any] | None
    fields: CallFields = field(default_factory=CallFields)  # what the call's events said


class Provider(Protocol):
    name: str

    def prepare_credentials(self, credentials: dict[str, str]) -> str | None:
        """Fill in generated secrets (mutating `credentials`); return one to show once."""
        ...

    def authenticate(self, request: WebhookRequest, source: SourceConfig, now: float) -> str | None:
        """Raise Unauthorized unless the request is genuine; return the delivery id if any."""
        ...

    def parse(self, request: WebhookRequest, delivery_id: str | None) -> list[CallEvent]:
        """Raise MalformedBody / InvalidInput for bodies this platform would not send."""
        ...

    def fetch(self, client: httpx.Client, source: SourceConfig, call: FetchContext) -> CallDetails:
        """Raise ProviderUnavailable (retry) or ProviderRejected (give up)."""
        ...
