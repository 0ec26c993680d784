"""The one outbound guard on platform APIs: detail_url / api_base_url vetted when saved and at
every fetch, redirects not followed, a total deadline and a size cap per fetch, and failures that
say what was wrong with an answer without repeating it."""

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from hypothesis import given
from hypothesis import settings as settings_of_hypothesis
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from callwatch.app import create_app
from callwatch.db import transaction
from callwatch.downstream import attempts, deliveries, subscriptions
from callwatch.downstream.subscriptions import SubscriptionIn
from callwatch.errors import InvalidInput, UnusableResponse
from callwatch.orgs import tenancy
from callwatch.outbound import http, ssrf
from callwatch.runtime import Runtime, utcnow
from callwatch.settings import Settings
from callwatch.simulator import BackgroundServer, events_for
from tests.conftest import ADMIN, create_org, create_source, path_of, signed
from tests.downstream.test_deliveries import call_data, log_of, summary
from tests.factories import eventually, tenant
from tests.pipeline.test_steps import hand_call
from workers.app import app as celery_app
from workers.app import configure
from workers.tasks import sweep

SECRET = "internal-secret-4711"  # what an internal service would answer; never to be shown
MAX_BYTES = 256 * 1024


@dataclass
class Script:
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    body: bytes = b"{}"
    drip_s: float | None = None  # one byte of `body` every drip_s seconds
    chunked: bool = False  # sent in chunks, with no content-length to refuse it by
    requests: int = 0
    in_flight: int = 0
    most_in_flight: int = 0


class PlatformApi(BackgroundServer):
    """A detail API answering each call as scripted, counting its requests and how many were
    being answered at once; `/internal/...` stands for a service inside the network."""

    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.internal_hits = 0
        self._lock = threading.Lock()
        routes = [
            Route("/calls/{call_id}", self._detail),
            Route("/internal/{path:path}", self._internal),
        ]
        super().__init__(Starlette(routes=routes))

    @property
    def detail_url(self) -> str:
        return self.url + "/calls/{call_id}"

    def shown(self, call_id: str) -> str:
        """The detail URL of `call_id` as an error names it."""
        return f"GET {self.url}/calls/{call_id}"

    async def _internal(self, request: Request) -> Response:
        with self._lock:
            self.internal_hits += 1
        return JSONResponse({"agent_id": SECRET, "metadata": {"token": SECRET}})

    async def _detail(self, request: Request) -> Response:
        script = self.scripts[request.path_params["call_id"]]
        with self._lock:
            script.requests += 1
            script.in_flight += 1
            script.most_in_flight = max(script.most_in_flight, script.in_flight)
        if script.chunked:
            chunks = [script.body[at : at + 16384] for at in range(0, len(script.body), 16384)]
            with self._lock:
                script.in_flight -= 1
            return StreamingResponse(iter(chunks), script.status, script.headers)
        if script.drip_s is None:
            with self._lock:
                script.in_flight -= 1
            return Response(script.body, script.status, script.headers)
        return StreamingResponse(self._drip(script), script.status, script.headers)

    async def _drip(self, script: Script) -> AsyncIterator[bytes]:
        """Until the client hangs up (Starlette then cancels this) or the body is out."""
        assert script.drip_s is not None
        try:
            for index in range(len(script.body)):
                yield script.body[index : index + 1]
                await asyncio.sleep(script.drip_s)
        finally:
            with self._lock:
                script.in_flight -= 1


@pytest.fixture
def api() -> Iterator[PlatformApi]:
    with PlatformApi() as server:
        yield server


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"fetch_max_bytes": MAX_BYTES})


def strict(settings: Settings) -> Settings:
    """The shipped default: private, loopback, link-local and metadata addresses refused."""
    return settings.model_copy(update={"allow_private_targets": False})


@pytest.fixture
def strict_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(strict(settings)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def strict_worker(settings: Settings) -> Iterator[None]:
    """A real Celery worker, as `worker` in conftest, that runs with the guard on."""
    rt = Runtime.start(strict(settings))
    configure(celery_app, rt.settings)
    celery_app.runtime = rt
    try:
        with start_worker(
            celery_app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30
        ):
            yield
    finally:
        celery_app.runtime = None
        rt.close()


def send_call(client: TestClient, source: dict[str, Any], call_id: str) -> None:
    for body in events_for(hand_call(call_id), embed_detail=False):
        raw = json.dumps(body).encode()
        headers = signed(source["webhook_secret"], raw)
        response = client.post(path_of(source["webhook_url"]), content=raw, headers=headers)
        assert response.status_code == 202, response.text


def finished(client: TestClient, key: str, call_id: str, timeout: float = 30) -> dict[str, Any]:
    """The call once assembled or failed; sweeps meanwhile, as beat would."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        response = client.get(f"/api/calls/{call_id}", headers={"authorization": f"Bearer {key}"})
        if response.status_code == 200:
            last = response.json()
            if last["assembly"]["state"] in ("assembled", "failed"):
                return last  # type: ignore[no-any-return]
        sweep.delay()
        time.sleep(0.2)
    raise AssertionError(f"call {call_id} not finished in {timeout}s; last: {last}")


# ------------------------------------------------------------------ validated when saved

PRIVATE_URLS = [
    ("http://127.0.0.1:9/calls/{call_id}", "127.0.0.1 resolves to 127.0.0.1 (loopback)"),
    ("http://169.254.169.254/latest/{call_id}", "169.254.169.254 resolves to 169.254.169.254"),
    ("http://10.1.2.3/calls/{call_id}", "10.1.2.3 resolves to 10.1.2.3 (private)"),
    ("http://[::1]:8000/calls/{call_id}", "::1 resolves to ::1 (loopback)"),
    ("http://2130706433/calls/{call_id}", "2130706433 resolves to 127.0.0.1 (loopback)"),
    ("http://0x7f000001/calls/{call_id}", "0x7f000001 resolves to 127.0.0.1 (loopback)"),
    ("http://[::ffff:a9fe:a9fe]/{call_id}", "::ffff:a9fe:a9fe resolves to ::ffff:169.254.169.254"),
]


@pytest.mark.parametrize(("url", "refused"), PRIVATE_URLS)
def test_a_detail_url_on_a_private_address_is_422(strict_client, url: str, refused: str) -> None:
    key = create_org(strict_client)
    body = {"name": "gen", "provider": "generic", "settings": {"detail_url": url}}

    response = strict_client.post(
        "/api/sources", json=body, headers={"authorization": f"Bearer {key}"}
    )

    problem = response.json()
    assert (response.status_code, response.headers["content-type"], problem["field"]) == (
        422,
        "application/problem+json",
        "settings.detail_url",
    )
    assert problem["detail"].startswith(f"settings.detail_url: {refused}")
    assert problem["detail"].endswith("; only public addresses can be fetched")


@pytest.mark.parametrize(("url", "refused"), PRIVATE_URLS)
def test_an_api_base_url_on_a_private_address_is_422(strict_client, url: str, refused: str) -> None:
    key = create_org(strict_client)
    base = url.removesuffix("/{call_id}").removesuffix("/calls")
    body = {
        "name": "v",
        "provider": "vapi",
        "settings": {"api_base_url": base},
        "credentials": {"secret": "s", "api_key": "k"},
    }

    response = strict_client.post(
        "/api/sources", json=body, headers={"authorization": f"Bearer {key}"}
    )

    # pydantic's URL type spells the host in its own way (2130706433 is 127.0.0.1)
    resolved = refused.split(" resolves to ")[1]
    assert (response.status_code, response.json()["field"]) == (422, "settings.api_base_url")
    assert f" resolves to {resolved}" in response.json()["detail"]


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("file:///etc/passwd", "settings.detail_url: must start with http:// or https://"),
        ("gopher://x.test/{call_id}", "settings.detail_url: must start with http:// or https://"),
        ("http://{call_id}.example.com/", "settings.detail_url: {call_id} may stand in the path "
         "or query only"),
        ("http://93.184.216.34@{call_id}/", "settings.detail_url: {call_id} may stand in the "
         "path or query only"),
    ],
)  # fmt: skip
def test_a_detail_url_that_is_not_a_fetchable_template_is_422(
    strict_client, url: str, detail: str
) -> None:
    key = create_org(strict_client)
    body = {"name": "gen", "provider": "generic", "settings": {"detail_url": url}}

    response = strict_client.post(
        "/api/sources", json=body, headers={"authorization": f"Bearer {key}"}
    )

    assert (response.status_code, response.json()["detail"]) == (422, detail)


def test_callwatch_source_add_refuses_a_private_detail_url(
    strict_client, settings, capsys, monkeypatch
) -> None:
    from callwatch.cli.main import main

    strict_client.post(
        "/api/admin/orgs", json={"name": "acme"}, headers={"authorization": f"Bearer {ADMIN}"}
    )
    monkeypatch.setenv("CALLWATCH_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CALLWATCH_SECRET_KEY", "test-secret-key")
    monkeypatch.setenv("CALLWATCH_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CALLWATCH_ALLOW_PRIVATE_TARGETS", "false")
    args = ["source", "add", "--org", "acme", "--name", "g", "--detail-url", "http://10.0.0.1/x"]

    code = main(args)

    assert (code, capsys.readouterr().err.strip()) == (
        2,
        "callwatch: settings.detail_url: 10.0.0.1 resolves to 10.0.0.1 (private); only public "
        "addresses can be fetched",
    )


# ------------------------------------------------------------------ checked again at fetch time


def test_a_source_saved_while_allowed_is_refused_at_fetch_time(client, strict_worker, api) -> None:
    key = create_org(client)
    source = create_source(client, key, settings={"detail_url": api.detail_url})  # allowed then
    api.scripts["inside-1"] = Script(body=json.dumps({"agent_id": SECRET}).encode())

    send_call(client, source, "inside-1")
    record = finished(client, key, "inside-1")

    assert record["assembly"] == {
        "state": "failed",
        "attempts": 1,
        "assembled_at": None,
        "last_error": f"{api.shown('inside-1')}: refused: 127.0.0.1 resolves to 127.0.0.1 "
        "(loopback)",
    }
    assert api.scripts["inside-1"].requests == 0


def test_a_redirect_to_an_internal_address_is_not_followed(client, worker, api) -> None:
    key = create_org(client)
    source = create_source(client, key, settings={"detail_url": api.detail_url})
    location = {"location": api.url + "/internal/latest/meta-data"}
    api.scripts["moved-1"] = Script(status=302, headers=location, body=b"")

    send_call(client, source, "moved-1")
    record = finished(client, key, "moved-1")

    assert record["assembly"] == {
        "state": "failed",
        "attempts": 1,
        "assembled_at": None,
        "last_error": f"{api.shown('moved-1')}: HTTP 302, a redirect (not followed)",
    }
    assert (api.scripts["moved-1"].requests, api.internal_hits) == (1, 0)
    assert SECRET not in json.dumps(record)


# ------------------------------------------------------------------ deadline, size, content


def test_a_slow_drip_api_is_cut_off_by_the_deadline_and_fetches_never_overlap(
    client, settings, runtime, api
) -> None:
    """A byte every 0.2 s resets every per-read timeout; only the total deadline ends it. The
    lease (3 s) lapsing mid-fetch would let the sweeper start a second fetch of the call."""
    dripping = settings.model_copy(
        update={"fetch_deadline_s": 1.0, "fetch_backoff_base_s": 0.5, "http_timeout_s": 10.0}
    )
    runtime.settings = dripping
    configure(celery_app, dripping)
    celery_app.runtime = runtime
    key = create_org(client)
    source = create_source(client, key, settings={"detail_url": api.detail_url})
    api.scripts["drip-1"] = Script(body=b" " * 40 + b'{"agent_id": "late"}', drip_s=0.2)

    with start_worker(
        celery_app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30
    ):
        send_call(client, source, "drip-1")
        record = finished(client, key, "drip-1")
    celery_app.runtime = None

    script = api.scripts["drip-1"]
    eventually(lambda: script.in_flight == 0)
    assert (script.requests, script.most_in_flight) == (settings.fetch_max_failures, 1)
    assert record["assembly"] == {
        "state": "failed",
        "attempts": 3,
        "assembled_at": None,
        "last_error": f"{api.shown('drip-1')}: deadline exceeded",
    }


DEEP = b"[" * 100_000 + b"]" * 100_000
UNUSABLE = [
    (
        "html",
        {"content-type": "text/html; charset=utf-8"},
        f"<html><body>{SECRET}</body></html>".encode(),
        "HTTP 200, text/html, SIZE bytes: not JSON (line 1, column 1: Expecting value)",
    ),
    (
        "latin1",
        {"content-type": "application/json"},
        f'{{"agent_id": "{SECRET}\xe9"}}'.encode("latin-1"),
        "HTTP 200, application/json, SIZE bytes: not UTF-8 (invalid byte at 34)",
    ),
    (
        "deep",
        {"content-type": "application/json"},
        DEEP,
        "HTTP 200, application/json, SIZE bytes: JSON nested deeper than 64",
    ),
    (
        "nested",
        {"content-type": "application/json"},
        b'{"agent_id": "' + SECRET.encode() + b'", "metadata": ' + b"[" * 70 + b"]" * 70 + b"}",
        "HTTP 200, application/json, SIZE bytes: JSON nested deeper than 64",
    ),
    (
        "nan",
        {"content-type": "application/json"},
        b'{"agent_id": "' + SECRET.encode() + b'", "duration_s": NaN}',
        "HTTP 200, application/json, SIZE bytes: not JSON callwatch can store (NaN is not a number "
        "JSON allows)",
    ),
    (
        "nul",
        {"content-type": "application/json"},
        b'{"agent_id": "' + SECRET.encode() + b'\\u0000"}',
        "HTTP 200, application/json, SIZE bytes: text with a NUL character (\\u0000), which the "
        "database cannot store",
    ),
    (
        "huge",
        {"content-type": "application/json"},
        b'{"agent_id": "' + SECRET.encode() * 16_000 + b'"}',
        f"HTTP 200, application/json, SIZE bytes: larger than {MAX_BYTES} bytes",
    ),
    (
        "odd-type",
        {"content-type": f"{SECRET} <script>"},
        b"<script>" + SECRET.encode(),
        "HTTP 200, an invalid content type, SIZE bytes: not JSON (line 1, column 1: Expecting "
        "value)",
    ),
    (
        "schema",
        {"content-type": "application/json"},
        json.dumps({"agent_id": [SECRET], "duration_s": SECRET, SECRET: 1}).encode(),
        None,
    ),
]


@pytest.mark.parametrize(("name", "headers", "body", "error"), UNUSABLE)
def test_an_unusable_answer_fails_the_call_saying_why_never_what(
    client, worker, api, name: str, headers: dict[str, str], body: bytes, error: str | None
) -> None:
    key = create_org(client)
    source = create_source(client, key, settings={"detail_url": api.detail_url})
    call_id = f"{name}-1"
    api.scripts[call_id] = Script(headers=headers, body=body)

    send_call(client, source, call_id)
    record = finished(client, key, call_id)

    expected = error or (
        "detail response does not match its schema: agent_id: string_type; duration_s: "
        "float_parsing"
    )
    expected = expected.replace("SIZE", str(len(body)))
    shown = f"{api.shown(call_id)}: {expected}" if error else expected
    assert record["assembly"] == {
        "state": "failed",
        "attempts": 1,
        "assembled_at": None,
        "last_error": shown,
    }
    assert SECRET not in json.dumps(record)


def test_an_answer_past_the_size_cap_is_refused_without_a_content_length(
    client, worker, api
) -> None:
    key = create_org(client)
    source = create_source(client, key, settings={"detail_url": api.detail_url})
    body = b'{"agent_id": "' + SECRET.encode() * 16_000 + b'"}'
    api.scripts["chunked-1"] = Script(body=body, chunked=True)

    send_call(client, source, "chunked-1")
    record = finished(client, key, "chunked-1")

    assert record["assembly"]["last_error"] == (
        f"{api.shown('chunked-1')}: HTTP 200, application/json: larger than {MAX_BYTES} bytes"
    )


@settings_of_hypothesis(max_examples=300, deadline=None)
@given(before=st.binary(max_size=200), after=st.binary(max_size=200))
def test_whatever_a_platform_answers_an_error_never_repeats_it(before: bytes, after: bytes) -> None:
    """Any bytes around a marker: JSON that can be stored, or an UnusableResponse that says
    why without a byte of it."""
    marker = b"MARKER-\xc3\xa9"
    body = before + b'"' + marker + b'"' + after
    error = ""
    try:
        http.parse_json(body, "GET http://api.test/x: HTTP 200, application/json")
    except UnusableResponse as exc:
        error = str(exc)
    assert "MARKER" not in error


def test_a_source_created_in_code_is_vetted_too(runtime) -> None:
    data = tenancy.SourceIn(
        name="v",
        provider="vapi",
        settings=tenancy.SourceSettings(api_base_url="http://169.254.169.254/"),
    )
    with transaction(runtime.sessions) as session:
        org, _ = tenancy.create_org(session, tenancy.OrgIn(name="acme"), utcnow())
        with pytest.raises(InvalidInput) as caught:
            tenancy.create_source(
                session, runtime.vault, org.id, data, utcnow(), guard=ssrf.Guard(False)
            )
    assert str(caught.value) == (
        "settings.api_base_url: 169.254.169.254 resolves to 169.254.169.254 (cloud metadata); "
        "only public addresses can be fetched"
    )


class DripReceiver:
    """A subscriber endpoint on a raw socket that answers one byte every `every_s` seconds."""

    ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/hook"
        self._socket.settimeout(0.05)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "DripReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._thread.join(10)
        self._socket.close()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            connection.settimeout(None)
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            try:
                for index in range(len(self.ANSWER)):
                    connection.sendall(self.ANSWER[index : index + 1])
                    time.sleep(self.every_s)
            except OSError:
                return  # the client hung up


def test_a_receiver_dripping_its_answer_is_cut_off_by_the_delivery_timeout(
    client, runtime, settings
) -> None:
    """Subscriber URLs go through the same deadline: per read, a byte every 0.1 s never times
    out, and the attempt would outlive its lease."""
    owner = tenant(client, "acme")
    runtime.settings = settings.model_copy(update={"delivery_timeout_s": 0.5})
    runtime.outbound = ssrf.client(runtime.settings)
    with DripReceiver(every_s=0.1) as receiver:
        with transaction(runtime.sessions) as session:
            data = SubscriptionIn(url=receiver.url, event_types=["call.assembled"])
            subscription, _ = subscriptions.create(
                session, runtime.vault, owner.org_id, data, runtime.clock()
            )
            [created] = deliveries.fan_out(
                session, owner.org_id, "call.assembled", call_data(owner), "k", runtime.clock()
            )
        attempts.deliver(runtime, created)

    [item] = log_of(client, owner, subscription.id)
    assert summary(item)["attempts"] == [(1, None, "retry", "timed out after 0.5 s (ReadTimeout)")]
