"""Calls to platform APIs, with failures sorted into retryable and permanent.

Every fetch goes through targets.fetch_client (the SSRF guard, no redirects) inside `bounded()`
(one total deadline, one size cap). A platform's answer is untrusted: what it sent is never
repeated in an error, which says what was wrong with it (status, content type, size, why it could
not be read) and nothing of its content.
"""

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from itertools import accumulate
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from callwatch import tracing
from callwatch.errors import (
    ProviderRejected,
    ProviderUnavailable,
    TargetRefused,
    UnusableResponse,
)
from callwatch.outbound import ssrf
from callwatch.settings import Settings

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Deeper than any platform's call object (Vapi's ~10 levels); Python's parser would stop at
# ~1000 with a RecursionError, and the database and pydantic have limits of their own.
MAX_JSON_DEPTH = 64
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,60}/[A-Za-z0-9!#$&^_.+-]{1,60}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_SURROGATE = re.compile("[\ud800-\udfff]")
# What parsed JSON can hold that the database cannot only comes from these escapes (a raw NUL
# or an encoded surrogate fails earlier, at json.loads or the UTF-8 decode).
_RISKY_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_NESTING_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}

_max_bytes: ContextVar[int] = ContextVar(
    "callwatch_fetch_max_bytes", default=Settings.model_fields["fetch_max_bytes"].default
)


@contextmanager
def bounded(seconds: float, max_bytes: int) -> Iterator[None]:
    """One fetch: all its requests end within `seconds` in total (targets.deadline), and each
    answer larger than `max_bytes` is refused."""
    token = _max_bytes.set(max_bytes)
    try:
        with ssrf.deadline(seconds):
            yield
    finally:
        _max_bytes.reset(token)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date relative to its Date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    try:
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except TypeError:  # a date without a zone
        return None


def shown(url: str) -> str:
    """The URL as errors and logs show it: no query string or user info (they may hold keys)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True)
class Fetched:
    """A platform's 2xx answer, read within the fetch's deadline and size cap."""

    body: bytes
    described: str  # "GET <url>: HTTP <status>, <content type>": what an error about it says


def get(
    client: httpx.Client,
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    absent: frozenset[int] = frozenset(),
) -> Fetched | None:
    """GET through the guard (no redirects); None for a status in `absent`. Raises
    ProviderUnavailable (retry), ProviderRejected / UnusableResponse / TargetRefused (give up).
    For any answer (JSON here; recordings reuse it), inside `bounded()`."""
    where, attributes = _a_get(url)
    with tracing.span("GET", tracing.SpanKind.CLIENT, attributes) as span:
        return _get(client, url, headers, absent, where, span)


def _a_get(url: str) -> tuple[str, dict[str, str]]:
    """A guarded GET's name for its errors and its span's attributes (the host only: a platform
    URL's path and query can hold ids and tokens); TargetRefused if the URL cannot be read."""
    where = f"GET {shown(url)}"
    try:
        ssrf.parse_url(url)
    except ValueError as exc:
        raise TargetRefused(f"{where}: refused: the URL {exc}") from None
    return where, {"http.request.method": "GET", "server.address": urlsplit(url).hostname or ""}


def _get(
    client: httpx.Client,
    url: str,
    headers: Mapping[str, str] | None,
    absent: frozenset[int],
    where: str,
    span: tracing.Span,
) -> Fetched | None:
    with _translated(where), client.stream("GET", url, headers=headers) as response:
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code in absent:
            return None
        _refuse_unless_ok(response, where)
        described = f"{where}: HTTP {response.status_code}, {_content_type(response)}"
        return Fetched(_read(response, described), described)


def _refuse_unless_ok(response: httpx.Response, where: str) -> None:
    """ProviderUnavailable (retry) or ProviderRejected / UnusableResponse unless a 2xx."""
    if response.status_code in RETRYABLE_STATUS:
        raise ProviderUnavailable(
            f"{where}: HTTP {response.status_code}",
            retry_after=retry_after(response.headers.get("retry-after")),
        )
    if response.status_code >= 400:
        raise ProviderRejected(f"{where}: HTTP {response.status_code}")
    if 300 <= response.status_code < 400:
        raise UnusableResponse(f"{where}: HTTP {response.status_code}, a redirect (not followed)")


@contextmanager
def _translated(where: str) -> Iterator[None]:
    """httpx's failures as callwatch's, in words that never quote what the platform sent."""
    try:
        yield
    except TargetRefused as exc:
        raise TargetRefused(f"{where}: refused: {exc}") from None
    except httpx.TimeoutException as exc:
        if ssrf.deadline_passed():
            raise ProviderUnavailable(f"{where}: deadline exceeded") from exc
        raise ProviderUnavailable(f"{where}: timed out ({type(exc).__name__})") from exc
    except httpx.ConnectError as exc:  # the guard's or the system's words, not the platform's
        raise ProviderUnavailable(f"{where}: {type(exc).__name__}: {exc}") from exc
    except httpx.DecodingError as exc:
        raise UnusableResponse(f"{where}: its content-encoding could not be decoded") from exc
    except httpx.TransportError as exc:  # a protocol error's text can quote what was sent
        raise ProviderUnavailable(f"{where}: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class Downloaded:
    """A file streamed into a sink: its media type as sent (None: none, or not a valid one)."""

    content_type: str | None
    size: int


def download(
    client: httpx.Client,
    url: str,
    sink: Callable[[bytes], object],
    headers: Mapping[str, str] | None = None,
) -> Downloaded:
    """GET a file (a recording) through the guard, chunk by chunk into `sink`, never holding it
    whole; inside `bounded()`, whose cap it is refused past. Raises as `get` does."""
    where, attributes = _a_get(url)
    with (
        tracing.span("GET", tracing.SpanKind.CLIENT, attributes) as span,
        _translated(where),
        client.stream("GET", url, headers=headers) as response,
    ):
        span.set_attribute("http.response.status_code", response.status_code)
        _refuse_unless_ok(response, where)
        described = f"{where}: HTTP {response.status_code}, {_content_type(response)}"
        size = 0
        for chunk in _chunks(response, described):
            size += len(chunk)
            sink(chunk)
        media = _content_type(response)
        return Downloaded(media if _MEDIA_TYPE.fullmatch(media) else None, size)


def get_json(
    client: httpx.Client,
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    absent: frozenset[int] = frozenset(),
) -> Any:
    """The answer's JSON; None for a status in `absent` (a platform that forgot the call)."""
    fetched = get(client, url, headers, absent=absent)
    return None if fetched is None else parse_json(fetched.body, fetched.described)


def _read(response: httpx.Response, described: str) -> bytes:
    """The body, refused (unread past the cap) if larger than the fetch's cap."""
    return b"".join(_chunks(response, described))


def _chunks(response: httpx.Response, described: str) -> Iterator[bytes]:
    """The body's chunks, refused (unread past the cap) once larger than the fetch's cap."""
    cap = _max_bytes.get()
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise UnusableResponse(f"{described}, {int(declared)} bytes: larger than {cap} bytes")
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > cap:
            raise UnusableResponse(f"{described}: larger than {cap} bytes")
        yield chunk


def _content_type(response: httpx.Response) -> str:
    """The media type as sent, if it is one (a header is the platform's text too)."""
    value = response.headers.get("content-type")
    if value is None:
        return "no content type"
    media = value.split(";", 1)[0].strip()
    return media.lower() if _MEDIA_TYPE.fullmatch(media) else "an invalid content type"


def parse_json(body: bytes, described: str) -> Any:
    """JSON a platform sent, or UnusableResponse saying why not: `described` plus its size."""
    where = f"{described}, {len(body)} bytes"
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnusableResponse(f"{where}: not UTF-8 (invalid byte at {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise UnusableResponse(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH}") from None
    except json.JSONDecodeError as exc:
        raise UnusableResponse(
            f"{where}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except ValueError as exc:  # a non-finite number, or an integer too long to convert
        raise UnusableResponse(f"{where}: not JSON callwatch can store ({exc})") from None
    # The walk over every value cost ~0.4 ms of a worker's CPU per detail fetch (bench/README.md):
    # it runs only for a body that may hold what it looks for.
    if _RISKY_ESCAPE.search(body) or _nesting(body) > MAX_JSON_DEPTH:
        problem = _unstorable(value)
        if problem is not None:
            raise UnusableResponse(f"{where}: {problem}")
    return value


def _nesting(body: bytes) -> int:
    """How deep the arrays and objects of valid JSON nest, counted in C: its strings removed,
    then a running count over its brackets."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_NESTING_STEP.__getitem__, brackets)), default=0)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number out of range")
    return value


def _unstorable(value: Any) -> str | None:
    """Why parsed JSON cannot be kept (too deep, text the database refuses), if it cannot."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if problem := _bad_text(item):
                return problem
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"JSON nested deeper than {MAX_JSON_DEPTH}"
            if isinstance(item, dict):
                pending += [(key, depth) for key in item]
            pending += [
                (child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)
            ]
    return None


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "text with a NUL character (\\u0000), which the database cannot store"
    if _SURROGATE.search(text):
        return "text with an unpaired surrogate (\\ud800-\\udfff), which is not Unicode"
    return None


def mismatch(what: str, exc: Exception) -> ProviderRejected:
    """`what` did not match its schema: where and why, never the values (they are the
    platform's data, which an error must not repeat)."""
    if not isinstance(exc, ValidationError):
        return ProviderRejected(f"{what} does not match its schema ({type(exc).__name__})")
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    shown_errors = [f"{_path(error['loc'])}: {error['type']}" for error in errors[:3]]
    more = f" and {len(errors) - 3} more" if len(errors) > 3 else ""
    return ProviderRejected(f"{what} does not match its schema: {'; '.join(shown_errors)}{more}")


def _path(loc: tuple[int | str, ...]) -> str:
    """A field path; a part that is not a plain name (a key the platform chose) is `?`."""
    parts = [str(part) if isinstance(part, int) or _NAME.fullmatch(part) else "?" for part in loc]
    return ".".join(parts) or "(the whole answer)"
