"""Vapi's server URL authentication: a shared secret (Bearer or X-Vapi-Secret), or an HMAC.

Confirmed in Vapi's SDKs (server-sdk-csharp `HmacAuthenticationPlan`): Vapi's HMAC plan signs
`{timestamp}.{body}` by default (timestamp header `x-timestamp`), hex by default or base64, with
an optional prefix. The timestamp's unit is not documented: seconds and milliseconds are both read.
"""

import base64
import binascii
import hashlib
import hmac
import math
import re

from callwatch.errors import Unauthorized
from callwatch.providers.base import WEBHOOK_SECRET, WebhookRequest

HMAC_HEADERS = ("x-vapi-signature", "x-signature")  # ours first, then Vapi's default
TIMESTAMP_HEADER = "x-timestamp"
TOLERANCE_S = 300
SIGNATURE_PREFIX = re.compile(r"[A-Za-z][\w-]{0,19}=([A-Za-z0-9+/_-]{40,}=*)")
HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")


def verify(request: WebhookRequest, credentials: dict[str, str], now: float) -> None:
    """Raise Unauthorized unless the request bears the HMAC or, failing that, the secret."""
    if credentials.get("hmac_secret") and _hmac_header(request, credentials):
        _check_hmac(request, credentials, now)
        return
    secret = credentials.get(WEBHOOK_SECRET)
    given = _presented_secret(request)
    if not secret:
        raise Unauthorized(f"missing {_hmac_names(credentials)[0]} header (HMAC signature)")
    if given is None:
        raise Unauthorized("missing Authorization: Bearer or X-Vapi-Secret header")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise Unauthorized("the Vapi secret (Authorization or X-Vapi-Secret) is wrong")


def _presented_secret(request: WebhookRequest) -> str | None:
    given = request.headers.get("x-vapi-secret")
    if given:
        return given.strip()
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _hmac_names(credentials: dict[str, str]) -> tuple[str, ...]:
    configured = credentials.get("hmac_header")
    return (configured.lower(),) if configured else HMAC_HEADERS


def _hmac_header(request: WebhookRequest, credentials: dict[str, str]) -> str | None:
    for name in _hmac_names(credentials):
        if request.headers.get(name):
            return name
    return None


def _check_hmac(request: WebhookRequest, credentials: dict[str, str], now: float) -> None:
    name = _hmac_header(request, credentials) or ""
    given = request.headers[name].strip()
    prefixed = SIGNATURE_PREFIX.fullmatch(given)  # Vapi's optional signaturePrefix, `sha256=`
    try:
        digest = _decode_digest(prefixed.group(1) if prefixed else given)
    except ValueError:
        raise Unauthorized(f"{name} is neither a hex nor a base64 HMAC-SHA256") from None
    key = credentials["hmac_secret"].encode()
    signed = [request.body]
    stamp = request.headers.get(credentials.get("hmac_timestamp_header") or TIMESTAMP_HEADER)
    if stamp:
        seconds = _epoch_s(stamp)
        if seconds is None or abs(now - seconds) > TOLERANCE_S:
            raise Unauthorized("the HMAC timestamp header is missing, malformed or over 5 min off")
        signed.insert(0, stamp.strip().encode() + b"." + request.body)
    expected = [hmac.new(key, message, hashlib.sha256).digest() for message in signed]
    if not any(hmac.compare_digest(digest, candidate) for candidate in expected):
        raise Unauthorized(f"{name} does not match the body")


def _decode_digest(text: str) -> bytes:
    """A 32-byte digest written as hex or as (url-safe) base64."""
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        decoded = base64.b64decode(text.replace("-", "+").replace("_", "/") + "==")
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(decoded) != hashlib.sha256().digest_size:
        raise ValueError("not a SHA-256 digest")
    return decoded


def _epoch_s(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not math.isfinite(value):  # NaN would pass any tolerance check
        return None
    return value / 1000 if value > 1e11 else value  # milliseconds or seconds
