"""Hostile input at every edge: each case gets its exact 4xx problem+json, never a 5xx.

One table of (request, expected problem), run on both databases; then the pieces that need more
than one request: allowed_ips networks, and the webhook token's absence from logs.
"""

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from callwatch.app import create_app
from callwatch.cli.main import main
from callwatch.logs import configure_logging, token_ref
from callwatch.orgs import tenancy
from callwatch.providers.twilio.signature import compute_signature
from callwatch.settings import Settings
from tests.conftest import ADMIN, create_org, create_source, path_of, signed

MB = 1024 * 1024


@dataclass
class Target:
    """An org with a source of each kind the table needs."""

    client: TestClient
    key: str
    generic: str  # webhook path
    secret: str
    vapi: str
    atoms: str
    telnyx: str
    bolna: str
    twilio: str


@pytest.fixture
def target(client: TestClient) -> Target:
    key = create_org(client)
    generic = create_source(client, key)
    vapi = create_source(client, key, name="v", provider="vapi", credentials={"secret": "s3"})
    atoms = create_source(
        client, key, name="a", provider="atoms", credentials={"signing_secret": "s4"}
    )
    telnyx = create_source(
        client, key, name="t", provider="telnyx", credentials={"private_key": "seed"}
    )
    bolna = create_source(client, key, name="b", provider="bolna")
    twilio = create_source(
        client, key, name="tw", provider="twilio", credentials={"auth_token": "tok"}
    )
    return Target(
        client=client,
        bolna=path_of(bolna["webhook_url"]),
        twilio=path_of(twilio["webhook_url"]),
        key=key,
        generic=path_of(generic["webhook_url"]),
        secret=generic["webhook_secret"],
        vapi=path_of(vapi["webhook_url"]),
        atoms=path_of(atoms["webhook_url"]),
        telnyx=path_of(telnyx["webhook_url"]),
    )


def event(**data: Any) -> dict[str, Any]:
    return {
        "type": "call.completed",
        "timestamp": "2026-11-20T10:00:00Z",
        "data": {"call_id": "c-1", "status": "completed", **data},
    }


def webhook(body: bytes, **header_overrides: str | bytes) -> Callable[[Target], httpx.Response]:
    """A generic webhook, signed over `body`, with some headers replaced afterwards."""

    def send(t: Target) -> httpx.Response:
        headers: dict[str, str | bytes] = {**signed(t.secret, body), **header_overrides}
        return t.client.post(t.generic, content=body, headers=headers)

    return send


def webhook_json(value: Any) -> Callable[[Target], httpx.Response]:
    return webhook(json.dumps(value).encode())


def twilio_json(body: bytes) -> Callable[[Target], httpx.Response]:
    """A Twilio callback as JSON, signed as Twilio signs one (the URL with its bodySHA256)."""

    def send(t: Target) -> httpx.Response:
        path = f"{t.twilio}?bodySHA256={hashlib.sha256(body).hexdigest()}"
        signature = compute_signature(b"tok", "http://testserver" + path, [])
        headers = {"x-twilio-signature": signature, "content-type": "application/json"}
        return t.client.post(path, content=body, headers=headers)

    return send


def get(path: str, token: bytes | None = None) -> Callable[[Target], httpx.Response]:
    def send(t: Target) -> httpx.Response:
        return t.client.get(path, headers={"authorization": b"Bearer " + (token or t.key.encode())})

    return send


def post(
    path: str, body: bytes, token: bytes | None = None, method: str = "POST"
) -> Callable[[Target], httpx.Response]:
    def send(t: Target) -> httpx.Response:
        headers = {
            "authorization": b"Bearer " + (token or t.key.encode()),
            "content-type": b"application/json",
        }
        return t.client.request(method, path, content=body, headers=headers)

    return send


def to_source(attr: str, body: bytes, **headers: str | bytes) -> Callable[[Target], httpx.Response]:
    def send(t: Target) -> httpx.Response:
        return t.client.post(getattr(t, attr), content=body, headers=headers)

    return send


PAYLOADS = Path(__file__).parent / "payloads"


def sample(provider: str, name: str, change: Callable[[dict[str, Any]], None]) -> bytes:
    """A platform's sample body with one value changed."""
    value = json.loads((PAYLOADS / provider / name).read_text())
    change(value)
    return json.dumps(value).encode()


DEEP = 100_000
DEEP_WITH_NUL = b'{"a":' * DEEP + b'"\\u0000"' + b"}" * DEEP
DEEP_LIST = b"[" * DEEP + b"]" * DEEP
NOW = str(int(time.time()))


def problem(status: int, title: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if field is not None:
        body["field"] = field
    return body


UNAUTHORIZED = problem(401, "Unauthorized")
MALFORMED = problem(400, "Malformed body")
TOO_LARGE = problem(413, "Payload too large")
NOT_FOUND = problem(404, "Not found")


def invalid(field: str | None) -> dict[str, Any]:
    return problem(422, "Invalid input", field)


CASES: dict[str, tuple[Callable[[Target], httpx.Response], dict[str, Any]]] = {
    # Authentication, before anything is parsed.
    "non-ASCII webhook-signature": (
        webhook(b"{}", **{"webhook-signature": "v1,é".encode()}),
        UNAUTHORIZED,
    ),
    "400-digit webhook-timestamp": (
        webhook(b"{}", **{"webhook-timestamp": "9" * 400}),
        UNAUTHORIZED,
    ),
    "5000-digit webhook-timestamp": (
        webhook(b"{}", **{"webhook-timestamp": "9" * 5000}),
        UNAUTHORIZED,
    ),
    "non-ASCII webhook-timestamp": (
        webhook(b"{}", **{"webhook-timestamp": ("\u0661\u0667" + "\u0660" * 8).encode()}),
        UNAUTHORIZED,
    ),
    "100 kB webhook-signature": (
        webhook(b"{}", **{"webhook-signature": "v1," + "A" * 100_000}),
        UNAUTHORIZED,
    ),
    "non-ASCII admin token": (
        post("/api/admin/orgs", b'{"name": "x"}', token="adm_é".encode()),
        UNAUTHORIZED,
    ),
    "non-ASCII API key": (get("/api/calls", token="cw_é".encode()), UNAUTHORIZED),
    "non-ASCII Vapi secret": (
        to_source("vapi", b"{}", **{"x-vapi-secret": "sé".encode()}),
        UNAUTHORIZED,
    ),
    "non-ASCII Atoms signature": (
        to_source("atoms", b"{}", **{"x-signature": "é".encode()}),
        UNAUTHORIZED,
    ),
    "400-digit Telnyx timestamp": (
        to_source(
            "telnyx",
            b"{}",
            **{"telnyx-signature-ed25519": "AAAA", "telnyx-timestamp": "9" * 400},
        ),
        UNAUTHORIZED,
    ),
    # Bodies that are not JSON, or not the JSON a platform sends.
    "deep JSON with an escaped NUL": (webhook(DEEP_WITH_NUL), MALFORMED),
    "deep JSON list": (webhook(DEEP_LIST), MALFORMED),
    "deep JSON to Twilio": (twilio_json(DEEP_LIST), MALFORMED),
    "Twilio CallDuration inf": (
        twilio_json(
            b'{"CallSid": "CA' + b"0" * 32 + b'", "CallStatus": "completed", "CallDuration": "inf"}'
        ),
        invalid("CallDuration"),
    ),
    "truncated JSON": (webhook(json.dumps(event()).encode()[:-7]), MALFORMED),
    "ragged JSON": (webhook(json.dumps(event()).encode() + b"}]"), MALFORMED),
    "XML body": (webhook(b"<call id='1'/>", **{"content-type": "text/xml"}), MALFORMED),
    "invalid UTF-8": (webhook(b'{"type": "\xff\xfe"}'), MALFORMED),
    "empty body": (webhook(b""), invalid(None)),
    "JSON array": (webhook(b"[]"), invalid(None)),
    "NUL in a field": (webhook_json(event(agent_id="a\x00b")), invalid("data.agent_id")),
    "NUL in a metadata key": (
        webhook_json(event(metadata={"k\x00": 1})),
        invalid("data.metadata.k\x00"),
    ),
    # Numbers that would be accepted, then fail assembly for ever.
    'duration_s "NaN"': (webhook_json(event(duration_s="NaN")), invalid("data.duration_s")),
    'duration_s "Infinity"': (
        webhook_json(event(duration_s="Infinity")),
        invalid("data.duration_s"),
    ),
    "duration_s NaN literal": (
        webhook(json.dumps(event(duration_s=float("nan"))).encode()),
        invalid("data.duration_s"),
    ),
    "duration_s -1e309": (
        webhook(json.dumps(event()).replace('"c-1"', '"c-1", "duration_s": -1e309').encode()),
        invalid("data.duration_s"),
    ),
    "duration_s of 400 digits": (
        webhook(json.dumps(event()).replace('"c-1"', '"c-1", "duration_s": ' + "9" * 400).encode()),
        invalid("data.duration_s"),
    ),
    "cost.total Infinity in a completion": (
        webhook_json(event(cost={"total": "-Infinity"})),
        invalid("data.cost.total"),
    ),
    "metadata NaN": (
        webhook(json.dumps(event(metadata={"score": float("nan")})).encode()),
        invalid("data.metadata.score"),
    ),
    "duration_s of 1e16": (webhook_json(event(duration_s=1e16)), invalid("data.duration_s")),
    "a latency sample of 1e308": (
        webhook_json(event(latency_samples={"turn": [900, 1e308]})),
        invalid("data.latency_samples.turn.1"),
    ),
    "a 400-digit turn count": (
        webhook(json.dumps(event(turns={"count": 10**400})).encode()),
        invalid("data.turns.count"),
    ),
    "a negative interruption count": (
        webhook_json(event(interruptions={"count": -1})),
        invalid("data.interruptions.count"),
    ),
    "a Vapi timestamp past year 9999": (
        to_source(
            "vapi",
            sample(
                "vapi", "status_update_ringing.json", lambda v: v["message"].update(timestamp=1e17)
            ),
            **{"x-vapi-secret": "s3"},
        ),
        invalid("message.timestamp"),
    ),
    "a Bolna duration of 2**63": (
        to_source(
            "bolna",
            sample("bolna", "completed.json", lambda v: v.update(conversation_duration=2**63)),
        ),
        invalid("record.duration_s"),
    ),
    "transcript that is not a list": (
        webhook_json(event(transcript="hello")),
        invalid("data.transcript"),
    ),
    # Sizes.
    "webhook body over the limit": (webhook(b" " * (MB + 1)), TOO_LARGE),
    "a superscript digit for content-length": (
        webhook(b"{}", **{"content-length": "\u00b2".encode("latin-1")}),
        invalid("type"),
    ),
    "search body over the limit": (
        post("/api/calls/search", json.dumps({"call_ids": ["x" * 100] * 100_000}).encode()),
        TOO_LARGE,
    ),
    "source body over the limit": (post("/api/sources", b" " * (MB + 1)), TOO_LARGE),
    "alert rule body over the limit": (post("/api/alert-rules", b" " * (MB + 1)), TOO_LARGE),
    "subscription body over the limit": (post("/api/subscriptions", b" " * (MB + 1)), TOO_LARGE),
    "org body over the limit": (
        post("/api/admin/orgs", b" " * (MB + 1), token=ADMIN.encode()),
        TOO_LARGE,
    ),
    "deep JSON search": (post("/api/calls/search", DEEP_WITH_NUL), MALFORMED),
    "a 500 kB provider name": (
        post("/api/sources", json.dumps({"name": "n", "provider": "p" * 500_000}).encode()),
        invalid("provider"),
    ),
    # Sources.
    "allowed_ips that is not an address": (
        post(
            "/api/sources",
            b'{"name": "n", "provider": "generic", "settings": {"allowed_ips": ["10.0.0.1", "x"]}}',
        ),
        invalid("settings.allowed_ips.1"),
    ),
    "allowed_ips with a bad prefix": (
        post(
            "/api/sources",
            b'{"name": "n", "provider": "generic", "settings": {"allowed_ips": ["10.0.0.0/33"]}}',
        ),
        invalid("settings.allowed_ips.0"),
    ),
    # Query strings.
    "duration of 1e309": (get("/api/calls?min_duration=1e309"), invalid("min_duration")),
    "duration NaN": (get("/api/stats?max_duration=nan"), invalid("max_duration")),
    "duration -inf": (get("/api/calls/export?min_duration=-inf"), invalid("min_duration")),
    "negative skip": (get("/api/calls?skip=-1"), invalid("skip")),
    "page 0": (get("/api/calls?page=0"), invalid("page")),
    "30-digit limit": (get("/api/calls?limit=" + "9" * 30), invalid("limit")),
    "skip and page": (get("/api/calls?skip=1&page=2"), invalid("page")),
    "year 10000": (get("/api/stats?date_to=10000-01-01"), invalid("date_to")),
    "year 0": (get("/api/calls?date_from=0000-12-31"), invalid("date_from")),
    "NUL in search": (get("/api/calls?search=%00"), invalid("search")),
    "unicode call id": (get("/api/calls/%E2%98%8E%F0%9F%93%9E"), NOT_FOUND),
    "NUL in a call id": (get("/api/calls/a%00b/events"), NOT_FOUND),
    "NUL in a recording's call id": (get("/api/calls/a%00b/recording"), NOT_FOUND),
    # Data settings.
    "a 30-digit retention": (
        post("/api/settings", b'{"retention_days": ' + b"9" * 30 + b"}", method="PATCH"),
        invalid("retention_days"),
    ),
    "deep JSON settings": (post("/api/settings", DEEP_LIST, method="PATCH"), MALFORMED),
    "settings body over the limit": (
        post("/api/settings", b" " * (MB + 1), method="PATCH"),
        TOO_LARGE,
    ),
    "unicode webhook token": (
        lambda t: t.client.post("/webhooks/%E2%98%8E", content=b"{}"),
        problem(404, "Not found"),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_input_gets_its_4xx_problem(target: Target, case: str) -> None:
    send, expected = CASES[case]
    response = send(target)
    body = response.json()
    detail = body.pop("detail", "")
    assert (response.status_code, response.headers["content-type"], body) == (
        expected["status"],
        "application/problem+json",
        expected,
    )
    assert len(detail) <= 500  # a problem never echoes a huge input back


EXTREME_DATES = [
    "date_to=9999-12-31",
    "date_to=9999-12-31T23:59:59.999999",
    "date_to=9999-12-31T23:59:59.999999%2B00:00",
    "date_from=0001-01-01T00:00:00%2B14:00",
    "date_from=0001-01-01&date_to=9999-12-31",
    "date_to=9999-12-31T23:00:00-14:00",
]


@pytest.mark.parametrize("query", EXTREME_DATES)
@pytest.mark.parametrize("path", ["/api/calls", "/api/stats", "/api/agents/a/call_stats"])
def test_dates_at_the_ends_of_the_calendar_are_answered(
    target: Target, path: str, query: str
) -> None:
    """Valid dates, however far: the call of the table is inside every such range."""
    body = json.dumps(event(agent_id="a", ended_at="2026-11-20T10:05:00Z")).encode()
    assert webhook(body)(target).status_code == 202
    response = get(f"{path}?{query}")(target)
    assert response.status_code == 200, response.text


ALLOWED_IPS = [
    (["203.0.113.7"], "203.0.113.7", True),
    (["203.0.113.7"], "203.0.113.8", False),
    (["203.0.113.0/24"], "203.0.113.200", True),
    (["203.0.113.0/24"], "203.0.114.1", False),
    (["10.0.0.0/8", "2001:db8::/32"], "2001:db8::1", True),
    (["10.0.0.0/8"], "::ffff:10.1.2.3", True),
    (["10.0.0.0/8"], "2001:db8::1", False),
    (["10.0.0.0/8"], "testclient", False),
    (["10.0.0.0/8"], None, False),
    (["not an address", "10.0.0.0/8"], "10.9.9.9", True),  # saved before validation existed
]


@pytest.mark.parametrize(("allowed", "client_ip", "expected"), ALLOWED_IPS)
def test_allowed_ips_match_addresses_and_networks(
    allowed: list[str], client_ip: str | None, expected: bool
) -> None:
    assert tenancy.ip_allowed(allowed, client_ip) == expected


def test_a_webhook_from_inside_an_allowed_network_is_accepted(settings: Settings) -> None:
    app = create_app(settings)
    with (
        TestClient(app, raise_server_exceptions=False, client=("198.51.100.20", 4000)) as inside,
        TestClient(app, raise_server_exceptions=False, client=("198.51.101.20", 4000)) as outside,
    ):
        key = create_org(inside)
        source = create_source(inside, key, settings={"allowed_ips": ["198.51.100.0/24"]})
        body = json.dumps(event()).encode()
        path = path_of(source["webhook_url"])
        replies = [
            c.post(path, content=body, headers=signed(source["webhook_secret"], body)).status_code
            for c in (outside, inside)
        ]
    assert replies == [401, 202]


def test_a_failing_webhook_logs_no_token(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """The database fails under a webhook (its sources table is gone): the error lines, with
    their tracebacks, name the webhook by its token's ref, never by the token."""
    engine = create_engine(settings.database_url.replace("postgresql://", "postgresql+psycopg://"))
    with TestClient(
        create_app(settings.model_copy(update={"log_level": "INFO"})),
        raise_server_exceptions=False,
    ) as client:
        key = create_org(client)
        source = create_source(client, key)
        path = path_of(source["webhook_url"])
        token = path.rsplit("/", 1)[1]
        body = json.dumps(event()).encode()
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE sources RENAME TO sources_away"))
        try:
            reply = client.post(path, content=body, headers=signed(source["webhook_secret"], body))
        finally:
            with engine.begin() as connection:
                connection.execute(text("ALTER TABLE sources_away RENAME TO sources"))
            engine.dispose()
    logged = capfd.readouterr().err
    assert reply.status_code >= 500  # the failure is real: something was logged about it
    assert (token in logged, token_ref(token) in logged) == (False, True)


def test_token_ref_is_short_and_stable() -> None:
    token = secrets.token_urlsafe(24)
    assert (token_ref(token), len(token_ref(token))) == (token_ref(token), len("ref-") + 12)
    assert token_ref(token) != token_ref(token + "x")


def test_the_cli_refuses_a_bad_allowed_ip_in_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLWATCH_DATABASE_URL", settings.database_url)
    argv = ["source", "add", "--org", "acme", "--name", "n", "--allowed-ip", "10.0.0.0/8"]

    status = main([*argv, "--allowed-ip", "10.0.0.300"])

    assert (status, capsys.readouterr().err) == (
        2,
        "callwatch: settings.allowed_ips.1: Value error, expected an IP address or a CIDR "
        "network, e.g. 203.0.113.0/24\n",
    )


def test_the_servers_access_log_names_a_webhook_by_its_ref(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As uvicorn logs a request, should its access log be on: the path is in the arguments."""
    configure_logging("INFO")
    token = secrets.token_urlsafe(24)
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "POST", f"/webhooks/{token}", "1.1", 202
        )
    assert caplog.messages == [
        f'127.0.0.1:50000 - "POST /webhooks/{token_ref(token)} HTTP/1.1" 202'
    ]
