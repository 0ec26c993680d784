"""Templates (autoescaped), their filters, and the headers every dashboard response carries."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

HERE = Path(__file__).parent
STATIC = HERE / "static"

# No inline script or style anywhere: scripts and styles come from /static only. Recordings play
# from the archive ('self'); a call page whose recording is not archived yet adds the one origin
# its platform URL is on (`media_origin`), no other page any.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'{media}; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP.format(media=""),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}

# Autoescaping on, always: every string a platform sent is untrusted.
templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
)


def safe_url(value: Any) -> str | None:
    """The URL if it is http(s), else None: a platform-supplied `javascript:` URL never lands
    in an href or src."""
    if not isinstance(value, str):
        return None
    try:
        scheme = urlsplit(value.strip()).scheme.lower()
    except ValueError:
        return None
    return value if scheme in ("http", "https") else None


# A host a CSP source may name as it is: a DNS name, IPv4, or IPv6 in brackets.
_CSP_HOST = re.compile(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]")


def media_origin(url: str | None) -> str | None:
    """`scheme://host[:port]` of an http(s) URL, fit to stand in a CSP as it is; else None."""
    if safe_url(url) is None:
        return None
    assert url is not None
    try:
        parts = urlsplit(url.strip())
        host, port = parts.netloc.rpartition("@")[2], parts.port
    except ValueError:
        return None
    host = host.rsplit(":", 1)[0] if port is not None else host
    if not _CSP_HOST.fullmatch(host):
        return None
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes}:{rest:02d}" if minutes else f"{value:.1f} s"


def milliseconds(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def money(value: float | None, currency: str | None = None) -> str:
    if value is None:
        return "—"
    return f"{value:,.4f} {currency or ''}".strip()


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(value: Any) -> str:
    text: str = json.dumps(value, indent=2, sort_keys=True, default=str)
    return text


for name, function in {
    "safe_url": safe_url,
    "seconds": seconds,
    "ms": milliseconds,
    "money": money,
    "percent": percent,
    "when": when,
    "pretty_json": pretty_json,
}.items():
    templates.env.filters[name] = function


def page(
    request: Request,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
    *,
    media: str | None = None,
) -> Response:
    """The template rendered, with the headers; `media`: one more origin audio may play from
    (a `media_origin`)."""
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers.update(HEADERS)
    if media is not None:
        response.headers["content-security-policy"] = CSP.format(media=f" {media}")
    return response


def secured(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response
