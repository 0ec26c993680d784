"""X-Twilio-Signature: an HMAC of the URL and the POST parameters, checked as Twilio's SDK does.

Confirmed in the twilio SDK (`RequestValidator`) and Twilio's webhook-security and shared-key
docs: X-Twilio-Signature is base64 HMAC-SHA1, keyed with the Auth Token, of the URL followed by
the POST parameters sorted by name as name + value; a JSON body is instead covered by
`bodySHA256=<hex>` in the URL, and only the URL is signed; the URL is accepted with or without its
port; a SharedKey's Webhook Setting may name HMAC_SHA256.
"""

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from callwatch.errors import MalformedBody, Unauthorized

ALGORITHMS: dict[str, Callable[..., Any]] = {
    "HMAC_SHA1": hashlib.sha1,
    "HMAC_SHA256": hashlib.sha256,
}
DEFAULT_PORTS = {"https": 443, "http": 80}


def url_variants(url: str) -> set[str]:
    """The URL as given, without its port and with the scheme's default port: Twilio's own
    validator accepts a signature over any of them, since Twilio's signing is inconsistent."""
    parts = urlsplit(url)
    host, colon, port = parts.netloc.rpartition(":")
    if colon and port.isdigit():
        bare, with_port = host, parts.netloc
    else:
        bare, with_port = parts.netloc, f"{parts.netloc}:{DEFAULT_PORTS.get(parts.scheme, 80)}"
    return {url, parts._replace(netloc=bare).geturl(), parts._replace(netloc=with_port).geturl()}


def form_params(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("body is not UTF-8 form data") from None
    return parse_qsl(text, keep_blank_values=True)


def compute_signature(
    key: bytes, url: str, params: Iterable[tuple[str, str]], algorithm: str = "HMAC_SHA1"
) -> str:
    """base64 HMAC of the URL followed by each parameter, sorted by name, as name + value."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    message = url + "".join(
        name + value for name in sorted(values) for value in sorted(values[name])
    )
    digest = hmac.new(key, message.encode(), ALGORITHMS[algorithm]).digest()
    return base64.b64encode(digest).decode()


def signature_valid(
    key: bytes, url: str, body: bytes, signature: str, algorithm: str = "HMAC_SHA1"
) -> bool:
    """Whether `signature` is Twilio's for this body posted to `url` (bodySHA256 or form)."""
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    body_hash = query.get("bodySHA256")
    if body_hash is not None:
        if not hmac.compare_digest(hashlib.sha256(body).hexdigest().encode(), body_hash.encode()):
            return False
        params: list[tuple[str, str]] = []
    else:
        params = form_params(body)
    given = signature.strip().encode()
    return any(
        hmac.compare_digest(compute_signature(key, candidate, params, algorithm).encode(), given)
        for candidate in url_variants(url)
    )


def signing_algorithm(settings_header: str | None) -> str:
    """HMAC_SHA1 (the Auth Token's) unless a Webhook Setting names another."""
    for part in (settings_header or "").split(","):
        name, equals, value = part.partition("=")
        if equals and name.strip() == "algorithm" and value.strip():
            algorithm = value.strip().upper()
            if algorithm not in ALGORITHMS:
                raise Unauthorized(f"X-Twilio-Webhooks-Signature-Settings: unsupported {algorithm}")
            return algorithm
    return "HMAC_SHA1"
