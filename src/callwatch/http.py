"""Calls to platform APIs, with failures sorted into retryable and permanent."""

import json
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from callwatch.errors import ProviderRejected, ProviderUnavailable

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date relative to its Date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def get_json(
    client: httpx.Client,
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    absent: frozenset[int] = frozenset(),
) -> Any:
    """The response's JSON; None for a status in `absent` (a platform that forgot the call)."""
    try:
        response = client.get(url, headers=headers)
    except httpx.TimeoutException as exc:
        raise ProviderUnavailable(f"GET {url}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise ProviderUnavailable(f"GET {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code in absent:
        return None
    if response.status_code in RETRYABLE_STATUS:
        raise ProviderUnavailable(
            f"GET {url}: HTTP {response.status_code}",
            retry_after=retry_after(response.headers.get("retry-after")),
        )
    if response.status_code >= 400:
        raise ProviderRejected(f"GET {url}: HTTP {response.status_code}")
    try:
        return response.json()
    except json.JSONDecodeError as exc:
        raise ProviderUnavailable(f"GET {url}: response is not JSON") from exc
