"""Intake's webhook token cache after a source changes: never stale past its TTL, nor past the
end of a rotated token's overlap; the process that made the change forgets at once."""

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from callwatch.app import create_app
from callwatch.db import transaction
from callwatch.errors import Gone, NotFound
from callwatch.intake.source_cache import Sources
from callwatch.orgs import sources as managed
from callwatch.runtime import Runtime, utcnow
from callwatch.settings import Settings
from callwatch.tables import Source
from tests.conftest import create_org, create_source, path_of
from tests.orgs.test_sources import auth, send

TTL_S = 0.5


def token_of(source: dict[str, str]) -> str:
    return source["webhook_url"].rsplit("/", 1)[1]


def change(runtime: Runtime, source_id: str, **values: object) -> None:
    """A change made elsewhere: by another process, whose cache this one does not share."""
    with transaction(runtime.sessions) as session:
        stored = session.get(Source, source_id)
        assert stored is not None
        for name, value in values.items():
            setattr(stored, name, value)


def outcome(sources: Sources, token: str) -> str:
    try:
        return asyncio.run(sources.lookup(token)).name
    except (Gone, NotFound) as exc:
        return type(exc).__name__


def test_a_changed_disabled_or_deleted_source_is_served_at_most_for_the_ttl(
    client: TestClient, runtime: Runtime
) -> None:
    key = create_org(client)
    renamed, disabled, deleted = (create_source(client, key, name=n) for n in ("a", "b", "c"))
    sources = Sources(runtime.sessions, runtime.vault, TTL_S)
    tokens = [token_of(s) for s in (renamed, disabled, deleted)]
    before = [outcome(sources, token) for token in tokens]

    change(runtime, renamed["id"], name="a2")
    change(runtime, disabled["id"], enabled=False)
    with transaction(runtime.sessions) as session:
        source = session.get(Source, deleted["id"])
        assert source is not None
        managed.delete(session, source, utcnow())
    within_ttl = [outcome(sources, token) for token in tokens]
    time.sleep(TTL_S + 0.1)
    after_ttl = [outcome(sources, token) for token in tokens]

    assert (before, within_ttl, after_ttl) == (
        ["a", "b", "c"],
        ["a", "b", "c"],
        ["a2", "Gone", "NotFound"],
    )


def test_a_rotated_out_token_is_not_kept_past_its_overlap(
    client: TestClient, runtime: Runtime
) -> None:
    source = create_source(client, create_org(client))
    old = token_of(source)
    sources = Sources(runtime.sessions, runtime.vault, 60)
    with transaction(runtime.sessions) as session:
        stored = session.get(Source, source["id"])
        assert stored is not None
        managed.rotate_token(session, stored, 0.3, utcnow())

    during = outcome(sources, old)
    time.sleep(0.4)
    after = outcome(sources, old)

    assert (during, after) == ("gen", "NotFound")


def test_an_overlap_that_ended_is_not_found_even_on_a_first_lookup(
    client: TestClient, runtime: Runtime
) -> None:
    source = create_source(client, create_org(client))
    change(
        runtime,
        source["id"],
        webhook_token="new-token",
        previous_token=token_of(source),
        previous_token_until=utcnow() - timedelta(seconds=1),
    )

    sources = Sources(runtime.sessions, runtime.vault, 60)

    assert (outcome(sources, token_of(source)), outcome(sources, "new-token")) == (
        "NotFound",
        "gen",
    )


@pytest.fixture
def cached_client(settings: Settings) -> Iterator[TestClient]:
    """A web process whose token cache keeps entries for a minute."""
    cached = settings.model_copy(update={"source_cache_s": 60.0})
    with TestClient(create_app(cached), raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_process_that_changes_a_source_forgets_its_cached_tokens_at_once(
    cached_client: TestClient,
) -> None:
    client = cached_client
    key = create_org(client)
    source = create_source(client, key)
    one = f"/api/sources/{source['id']}"
    url, secret = source["webhook_url"], source["webhook_secret"]

    cached = send(client, url, secret, "a")
    client.patch(one, json={"enabled": False}, headers=auth(key))
    disabled = send(client, url, secret, "b")
    client.patch(one, json={"enabled": True}, headers=auth(key))
    rotated = client.post(one + "/rotate-token", json={"overlap_s": 0}, headers=auth(key)).json()
    old_token = send(client, url, secret, "c")
    new_token = send(client, rotated["webhook_url"], secret, "d")
    client.delete(one, headers=auth(key))
    deleted = client.post(path_of(rotated["webhook_url"]), content=b"{}").status_code

    assert (cached, disabled, old_token, new_token, deleted) == (202, 410, 404, 202, 404)
