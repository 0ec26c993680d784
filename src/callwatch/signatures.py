"""Standard Webhooks v1 (HMAC-SHA256) signing and verification, for intake and for our own sends."""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from functools import lru_cache

from callwatch.errors import Unauthorized

TOLERANCE_S = 300
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


@lru_cache(maxsize=1024)  # intake verifies every webhook of a source with the same secret
def _key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        return raw.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.digest(_key(secret), signed, hashlib.sha256)
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def fresh(sent_s: int, now: float, tolerance_s: int = TOLERANCE_S) -> bool:
    """Whether a sender's Unix time is within the tolerance of ours; in integers, since a header's
    400-digit number is a valid int but too large to subtract from a float."""
    return abs(int(now) - sent_s) <= tolerance_s


def verify(secret: str, request_headers: Mapping[str, str], body: bytes, now: float) -> str:
    """Check the three headers and return the `webhook-id`; raises Unauthorized."""
    msg_id = request_headers.get("webhook-id")
    stamp = request_headers.get("webhook-timestamp")
    given = request_headers.get("webhook-signature")
    if not msg_id or not stamp or not given:
        raise Unauthorized("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise Unauthorized("webhook-timestamp is not an integer") from None
    if not fresh(timestamp, now):
        raise Unauthorized("webhook-timestamp is outside the 5 minute tolerance")
    expected = sign(secret, msg_id, timestamp, body)
    for candidate in given.split():
        # Bytes: compare_digest refuses str that is not ASCII (a header is any latin-1 text).
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            return msg_id
    raise Unauthorized("webhook-signature does not match")
