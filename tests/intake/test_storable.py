"""Intake takes only what the database can store: for every provider's recorded webhooks, each
string made too long is either refused with a 4xx naming the field, or stored and applied whole."""

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import String, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from callwatch import signatures
from callwatch.calls import store as calls
from callwatch.errors import RequestError
from callwatch.intake.inbox import store
from callwatch.intake.receiver import rows_of
from callwatch.orgs.tenancy import source_by_token
from callwatch.providers.base import RequestHeaders, SourceConfig, WebhookRequest
from callwatch.runtime import Runtime, utcnow
from callwatch.settings import Settings
from callwatch.simulator.platforms import PLATFORMS
from callwatch.tables import Base, InboxEvent
from tests.conftest import create_org, create_source, path_of, signed
from tests.intake.test_receiver import inbox, intake_on, outcome, request, run, webhook

PAYLOADS = Path(__file__).parent.parent / "payloads"
LONG = "7" * 300  # longer than every varchar column (the longest hold 200)
SECRET = "sekrit-for-the-tests"
# Each provider's recorded webhooks (the other files are its API's answers and the records).
WEBHOOKS = {
    "generic": ["fixa/call_events.json"],  # fixa's analysed calls arrive as generic events
    "atoms": [f"atoms/{name}.json" for name in ("pre_conversation", "post_conversation")]
    + ["atoms/analytics_completed.json"],
    "bolna": [
        f"bolna/{name}.json"
        for name in ("queued", "initiated", "ringing", "in_progress", "call_disconnected")
    ]
    + ["bolna/completed.json"],
    "burki": ["burki/status_update.json", "burki/end_of_call_report.json"],
    "fixa": ["fixa/analysis.json"],
    "origins": ["origins/completion.json"],
    "retell": [f"retell/{name}.json" for name in ("call_started", "call_ended", "call_analyzed")],
    "telnyx": [
        f"telnyx/{name}.json"
        for name in ("call_initiated", "call_answered", "call_recording_saved", "call_hangup")
    ]
    + ["telnyx/call_cost.json"],
    "twilio": [
        f"twilio/{name}.txt"
        for name in ("call_initiated", "call_ringing", "call_answered", "call_completed")
    ]
    + ["twilio/recording_completed.txt"],
    "vapi": [
        f"vapi/{name}.json"
        for name in (
            "status_update_queued",
            "status_update_ringing",
            "status_update_in_progress",
            "user_interrupted",
            "status_update_ended",
            "end_of_call_report",
        )
    ],
}


def bodies(name: str) -> list[dict[str, Any]]:
    path = PAYLOADS / name
    if path.suffix == ".txt":
        return [dict(parse_qsl(path.read_text().strip(), keep_blank_values=True))]
    loaded = json.loads(path.read_text())
    return loaded if isinstance(loaded, list) else [loaded]


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every string in `value`; of a list, only its first two items' (a transcript's
    hundred turns say nothing the first two do not)."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:2]):
            yield from leaves(item, (*path, index))


def replaced(value: Any, path: tuple[Any, ...], new: str) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    return [
        replaced(item, rest, new) if index == head else item for index, item in enumerate(value)
    ]


def source_for(client: TestClient, runtime: Runtime, provider: str) -> SourceConfig:
    key = create_org(client, f"org-{provider}")
    secret = signatures.new_secret() if provider == "generic" else SECRET
    name = PLATFORMS[provider].secret_name
    credentials = {name: secret} if name else {}
    created = create_source(client, key, provider=provider, credentials=credentials)
    with runtime.sessions() as session:
        config = source_by_token(session, runtime.vault, path_of(created["webhook_url"])[10:])
    assert config is not None
    return config


def request_of(source: SourceConfig, secret: str, body: dict[str, Any], url: str) -> WebhookRequest:
    platform = PLATFORMS[source.provider]
    now = time.time()
    if platform.sign_url is not None:
        content, headers = platform.sign_url(secret, body, now, url)
    else:
        content, headers = platform.sign(secret, body, now)
    return WebhookRequest(
        body=content,
        headers=RequestHeaders(headers.items()),
        content_type=headers.get("content-type", ""),
        client_ip="127.0.0.1",
        url=url,
        received_at=utcnow(),
    )


def overflowing(session: Session) -> list[str]:
    """Every stored string longer than its column (SQLite stores them; Postgres refuses)."""
    found = []
    for table in Base.metadata.sorted_tables:
        columns = [
            column
            for column in table.columns
            if isinstance(column.type, String) and column.type.length is not None
        ]
        for row in session.execute(select(*columns)):
            for column, value in zip(columns, row, strict=True):
                length = getattr(column.type, "length", None)
                if value is not None and length is not None and len(value) > length:
                    found.append(f"{table.name}.{column.name}")
    return found


@pytest.mark.parametrize("provider", sorted(WEBHOOKS))
def test_every_string_too_long_is_refused_naming_its_field_or_stored_and_applied(
    provider: str, client: TestClient, runtime: Runtime, settings: Settings
) -> None:
    source = source_for(client, runtime, provider)
    secret = source.credentials.get(PLATFORMS[provider].secret_name or "", "")
    url = f"{settings.public_url}/webhooks/token"
    refused: dict[str, int] = {}
    accepted = 0
    for name in WEBHOOKS[provider]:
        for body in bodies(name):
            for path in leaves(body):
                request = request_of(source, secret, replaced(body, path, LONG), url)
                try:
                    rows = rows_of(source, request)
                except RequestError as exc:  # a 4xx: the tree's every class is one
                    field = exc.field or "(none)"
                    refused[field] = refused.get(field, 0) + 1
                    continue
                accepted += 1
                # Stored and applied as intake and a worker would, then rolled back: on
                # Postgres a value too long fails here; on SQLite the lengths are compared.
                with runtime.sessions() as session:
                    stored = store(session, rows)
                    applied = calls.apply_inbox(session, sorted(stored), utcnow(), 0.0)
                    calls.save(session, [change.call for change in applied])
                    assert (overflowing(session), path) == ([], path)
                    session.rollback()
    assert accepted > 0
    assert "(none)" not in refused, refused


# ---------------------------------------------------------------- over HTTP


def post(client: TestClient, source: dict[str, Any], body: Any, msg_id: str | None = None) -> Any:
    raw = json.dumps(body).encode()
    headers = (
        signed(source["webhook_secret"], raw, msg_id=msg_id)
        if "webhook_secret" in source
        else {"content-type": "application/json"}
    )
    return client.post(path_of(source["webhook_url"]), content=raw, headers=headers)


def generic_body(**data: Any) -> dict[str, Any]:
    return {
        "type": "call.status_changed",
        "timestamp": "2026-12-01T09:00:00Z",
        "data": {"call_id": "c-1", "status": "ringing", **data},
    }


def source_of(client: TestClient, org: str) -> tuple[str, str]:
    source = create_source(client, create_org(client, org))
    return source["webhook_url"].rsplit("/", 1)[1], source["webhook_secret"]


def webhook_with(call_id: str, **data: Any) -> bytes:
    body = generic_body(call_id=call_id, **data)
    return json.dumps(body).encode()


def dedupe_keys(runtime: Runtime) -> list[str]:
    with runtime.sessions() as session:
        return sorted(session.scalars(select(InboxEvent.dedupe_key)))


@pytest.mark.parametrize(
    ("data", "field", "detail"),
    [
        (
            {"agent_id": "a" * 201},
            "agent_id",
            "agent_id: 201 characters, at most 200 can be stored",
        ),
        ({"channel": "c" * 21}, "channel", "channel: 21 characters, at most 20 can be stored"),
        (
            {"to_number": "5" * 65},
            "to_number",
            "to_number: 65 characters, at most 64 can be stored",
        ),
    ],
)
def test_what_cannot_be_stored_is_a_422_naming_the_field_and_nothing_is_stored(
    client: TestClient, runtime: Runtime, data: dict[str, Any], field: str, detail: str
) -> None:
    source = create_source(client, create_org(client))

    response = post(client, source, generic_body(**data))

    assert (response.status_code, response.headers["content-type"]) == (
        422,
        "application/problem+json",
    )
    assert response.json() == {
        "type": "about:blank",
        "title": "Invalid input",
        "status": 422,
        "detail": detail,
        "field": field,
    }
    assert dedupe_keys(runtime) == []


def test_a_webhook_id_too_long_for_its_column_dedupes_as_its_digest(
    client: TestClient, runtime: Runtime
) -> None:
    source = create_source(client, create_org(client))
    msg_id = "msg_" + "x" * 250

    first = post(client, source, generic_body(), msg_id=msg_id)
    again = post(client, source, generic_body(), msg_id=msg_id)

    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert (again.status_code, again.json()) == (202, {"status": "duplicate"})
    assert dedupe_keys(runtime) == ["sha256:" + hashlib.sha256(msg_id.encode()).hexdigest()]


def test_a_fixa_call_id_near_its_limit_is_stored_and_dedupes(
    client: TestClient, runtime: Runtime
) -> None:
    source = create_source(client, create_org(client), provider="fixa")
    body = bodies("fixa/analysis.json")[0]
    body["call"]["id"] = "f" * 190  # its dedupe key is the id, ':' and a digest: over 200

    first, again = post(client, source, body), post(client, source, body)

    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert (again.status_code, again.json()) == (202, {"status": "duplicate"})
    [key] = dedupe_keys(runtime)
    assert (key.startswith("sha256:"), len(key)) == (True, 71)


def test_a_request_that_cannot_be_stored_fails_alone_not_its_batch(
    client: TestClient, runtime: Runtime
) -> None:
    acme, globex = source_of(client, "acme"), source_of(client, "globex")
    queued: list[list[str]] = []
    intake = intake_on(runtime, queued)
    long_id = request(webhook("a-1"), acme[1], "msg_" + "x" * 250)
    long_agent = request(webhook_with("a-2", agent_id="a" * 300), acme[1], "m-agent")
    others = [request(webhook(f"g-{n}"), globex[1], f"m-{n}") for n in range(10)]

    async def scenario() -> list[Any]:
        sources = [await intake.sources.lookup(token) for token, _ in (acme, globex)]
        return await asyncio.gather(
            intake.submit(sources[0], long_id),
            intake.submit(sources[0], long_agent),
            *(intake.submit(sources[1], other) for other in others),
            return_exceptions=True,
        )

    results = run(intake, scenario)

    stored = dict(inbox(runtime))
    assert [outcome(result) for result in results] == [
        [stored["a-1"]],
        ("InvalidInput", "agent_id: 300 characters, at most 200 can be stored", "agent_id"),
        *([stored[f"g-{n}"]] for n in range(10)),
    ]
    assert sorted(stored) == sorted(["a-1", *(f"g-{n}" for n in range(10))])
