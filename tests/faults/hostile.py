"""Hostile webhook requests for every provider, as Hypothesis strategies.

Three kinds, each posted to a real source of the provider:
- a real webhook (the simulator's, or one of tests/payloads/) with one value replaced by a
  hostile one or one key removed, then signed correctly: the body passes authentication and
  reaches parsing and storage;
- hostile raw bytes (not JSON, deep JSON, NaN, huge numbers, invalid UTF-8, over the body
  limit...), signed correctly where the provider's signature covers raw bytes;
- a correctly signed request with one header replaced by a hostile value (non-ASCII, 400
  digits, 8 KB, empty), and for Standard Webhooks a hostile `webhook-id` or timestamp that is
  itself signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from hypothesis import strategies as st

from callwatch import signatures
from callwatch.providers.telnyx.provider import signing_key
from callwatch.simulator import PLATFORMS, make_call
from tests.faults.sender import Target, sign

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads"
NOT_WEBHOOKS = {"expected_record.json"}


@dataclass(frozen=True)
class Request:
    kind: str
    url: str
    content: bytes
    headers: dict[str, bytes]

    def describe(self) -> str:
        shown = self.content[:300].decode(errors="backslashreplace")
        headers = {
            name: value[:120].decode(errors="replace") for name, value in self.headers.items()
        }
        return f"{self.kind}: headers {headers} body ({len(self.content)} bytes) {shown!r}"


def seeds(provider: str, calls: int = 4, seed: int = 21) -> list[dict[str, Any]]:
    """Real webhook bodies of `provider`: the simulator's for a few calls, and the recorded
    payloads in tests/payloads/<provider>/ that are JSON objects."""
    rng = random.Random(seed)
    bodies = [
        body
        for _ in range(calls)
        for _, body in PLATFORMS[provider].webhooks(make_call(rng, datetime.now(UTC)), False)
    ]
    folder = PAYLOADS / provider
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name in NOT_WEBHOOKS:
            continue
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            bodies.append(loaded)
    return bodies


def _deep(depth: int, inner: bytes = b'"\\u0000"') -> bytes:
    return b'{"a":' * depth + inner + b"}" * depth


HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "NaN",
            "Infinity",
            "-1",
            "1e999",
            "9999-12-31T23:59:59Z",
            "0000-00-00T00:00:00Z",
            "2026-13-45T99:99:99Z",
            "\x00",
            "\ud800",
            "é" * 300,
            "x" * 201,
            "1" * 400,
            "+1" * 40,
            "null",
            "http://169.254.169.254/latest/meta-data/",
        ]
    ),
    st.integers(min_value=20, max_value=3000).map(lambda n: "a" * n),
)
HOSTILE_VALUE = st.one_of(
    HOSTILE_TEXT,
    st.integers(),
    st.sampled_from([10**400, -(10**20), 2**63, 2**64, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.just([]),
    st.just({}),
    st.lists(HOSTILE_TEXT, max_size=3),
    st.integers(min_value=1, max_value=50).map(
        lambda n: json.loads(_deep(n, b"1").decode())  # nested objects json.dumps can write
    ),
)
RAW_BODIES = [
    b"",
    b"{",
    b"[]",
    b"null",
    b"1",
    b'"text"',
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b"\xff\xfe\xfd",
    b"\xef\xbb\xbf{}",
    b'{"a":"\\u0000"}',
    b'{"a":"\\ud800"}',
    b'{"a":1e999}',
    b'{"a":' + b"1" * 5000 + b"}",
    _deep(1000),
    _deep(100_000),
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":"' + b"x" * 2_000_000 + b'"}',  # over the 1 MiB body limit
]
HOSTILE_RAW = st.one_of(st.binary(max_size=400), st.sampled_from(RAW_BODIES))
HEADER_VALUES = [
    b"",
    "é".encode(),
    "é".encode("latin-1"),
    b"\xff\xfe",
    b"1" * 400,
    b"v1," + b"A" * 8000,
    b"Bearer \xc3\xa9",
    b"v=1,d=zz",
    b"-1",
    b"application/json; charset=utf-16",
    b"text/html",
]
HOSTILE_HEADER = st.one_of(
    st.sampled_from(HEADER_VALUES),
    # What an HTTP client can send at all: no control characters (HTAB aside).
    st.binary(min_size=1, max_size=60).filter(
        lambda value: all(byte >= 0x20 or byte == 0x09 for byte in value) and 0x7F not in value
    ),
)
HEADER_NAMES = [
    "content-type",
    "authorization",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-signature",
    "x-retell-signature",
    "telnyx-signature-ed25519",
    "telnyx-timestamp",
    "x-twilio-signature",
    "x-forwarded-for",
]


def sign_raw(target: Target, content: bytes, now: float) -> dict[str, str]:
    """Headers that authenticate `content` as `target`'s platform would sign those bytes."""
    secret, name = target.secret, target.name
    stamp = int(now)
    json_type = {"content-type": "application/json"}
    if name == "generic":
        return json_type | signatures.headers(secret, f"msg_{stamp}_{len(content)}", stamp, content)
    if name == "atoms":
        return json_type | {"x-signature": hmac.new(secret.encode(), content, "sha256").hexdigest()}
    if name == "retell":
        ms = int(now * 1000)
        digest = hmac.new(secret.encode(), content + str(ms).encode(), "sha256").hexdigest()
        return json_type | {"x-retell-signature": f"v={ms},d={digest}"}
    if name == "telnyx":
        signature = signing_key(secret).sign(str(stamp).encode() + b"|" + content)
        return json_type | {
            "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
            "telnyx-timestamp": str(stamp),
        }
    if name == "vapi":
        return json_type | {"authorization": f"Bearer {secret}"}
    if name == "twilio":
        params = dict(parse_qsl(content.decode("utf-8", "replace"), keep_blank_values=True))
        message = target.url + "".join(key + params[key] for key in sorted(params))
        mac = hmac.new(secret.encode(), message.encode(), hashlib.sha1).digest()
        return {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": base64.b64encode(mac).decode(),
        }
    return json_type  # unsigned: the URL's token is the credential


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value[:5]):
            found += _paths(inner, (*prefix, index))
    return found


def _replaced(value: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if delete and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _replaced(value[head], rest, new, delete)
        return copy
    copy_list = list(value)
    if delete and not rest:
        del copy_list[head]
    else:
        copy_list[head] = _replaced(value[head], rest, new, delete)
    return copy_list


@st.composite
def mutated_body(draw: st.DrawFn, target: Target, bodies: list[dict[str, Any]]) -> Request:
    body = draw(st.sampled_from(bodies))
    paths = _paths(body)
    path = draw(st.sampled_from(paths)) if paths else ()
    delete = draw(st.booleans()) and bool(path)
    new = draw(HOSTILE_VALUE)
    if target.name == "twilio":  # a form: every value is text
        new = "" if new is None else str(new)
        path = path[:1]
    mutated = _replaced(body, path, new, delete)
    if not isinstance(mutated, dict):
        mutated = {"value": mutated}
    now = draw(st.sampled_from([0.0, -400.0, 400.0]))  # in the window, or 400 s off it
    content, headers = sign(target, mutated, _now() + now)
    change = "removed" if delete else f"= {new!r:.80}"
    shown = f"{target.name} body {list(path)} {change}"
    return Request(shown, target.url, content, _encoded(headers))


@st.composite
def raw_body(draw: st.DrawFn, target: Target) -> Request:
    content = draw(HOSTILE_RAW)
    headers = sign_raw(target, content, _now())
    return Request(f"{target.name} raw body", target.url, content, _encoded(headers))


@st.composite
def hostile_header(draw: st.DrawFn, target: Target, bodies: list[dict[str, Any]]) -> Request:
    body = draw(st.sampled_from(bodies))
    if target.name == "generic" and draw(st.booleans()):
        # The signature covers the id and the timestamp: hostile ones that verify.
        content = json.dumps(body, separators=(",", ":")).encode()
        msg_id = draw(HOSTILE_TEXT.filter(lambda t: t.isascii() and t.isprintable()))
        stamp = draw(st.sampled_from([int(_now()), 0, -1, 10**20]))
        headers = {"content-type": "application/json"}
        headers |= signatures.headers(target.secret, msg_id, stamp, content)
        shown = f"generic signed webhook-id {msg_id[:40]!r}"
        return Request(shown, target.url, content, _encoded(headers))
    content, signed = sign(target, body, _now())
    hostile = _encoded(signed)
    name = draw(st.sampled_from(HEADER_NAMES))
    hostile[name] = draw(HOSTILE_HEADER)
    return Request(f"{target.name} header {name}", target.url, content, hostile)


def _encoded(headers: dict[str, str]) -> dict[str, bytes]:
    return {name: value.encode() for name, value in headers.items()}


def corpus(target: Target, bodies: list[dict[str, Any]]) -> list[Request]:
    """The fixed hostile cases, every one for every provider: each raw body signed, each
    hostile value in each authentication header of a signed real webhook."""
    cases = [
        Request(
            f"{target.name} raw body #{n}",
            target.url,
            content,
            _encoded(sign_raw(target, content, _now())),
        )
        for n, content in enumerate(RAW_BODIES)
    ]
    content, signed = sign(target, bodies[0], _now())
    for name in [*signed, "webhook-signature", "webhook-timestamp"]:
        for value in HEADER_VALUES:
            headers = _encoded(signed) | {name: value}
            cases.append(Request(f"{target.name} header {name}", target.url, content, headers))
    return cases


def requests_for(target: Target, bodies: list[dict[str, Any]]) -> st.SearchStrategy[Request]:
    return st.one_of(mutated_body(target, bodies), raw_body(target), hostile_header(target, bodies))


def _now() -> float:
    return datetime.now(UTC).timestamp()
