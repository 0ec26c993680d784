"""An org's API keys: created (shown once), listed (never the key), deleted (401 from then on)."""

import secrets
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, event, text
from starlette.testclient import TestClient

from callwatch import migrate
from callwatch.db import transaction
from callwatch.errors import Conflict
from callwatch.orgs import keys, tenancy
from callwatch.runtime import Runtime
from tests.factories import T0, tenant


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def create_key(client: TestClient, key: str, name: str) -> dict[str, Any]:
    response = client.post("/api/keys", json={"name": name}, headers=bearer(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_a_new_key_is_shown_once_then_listed_without_it(client: TestClient) -> None:
    acme = tenant(client, "acme")

    created = create_key(client, acme.key, "grafana")
    listed = client.get("/api/keys", headers=acme.headers)

    secret = created.pop("api_key")
    assert (secret[:3], created["prefix"], created["name"]) == ("cw_", secret[:7], "grafana")
    assert created["last_used_at"] is None
    first, second = listed.json()["items"]
    assert second == created
    assert (sorted(first), first["name"], first["prefix"]) == (
        ["created_at", "id", "last_used_at", "name", "prefix"],
        "first key",
        acme.key[:7],
    )
    assert first["last_used_at"] is not None  # this very request used it
    assert secret not in listed.text
    assert acme.key not in listed.text


def test_a_new_key_reaches_the_org_and_a_deleted_key_is_refused_from_then_on(
    client: TestClient,
) -> None:
    acme = tenant(client, "acme")
    first_id = client.get("/api/keys", headers=acme.headers).json()["items"][0]["id"]
    created = create_key(client, acme.key, "second")

    deleted = client.delete(f"/api/keys/{first_id}", headers=bearer(created["api_key"]))

    assert deleted.status_code == 204
    refused = client.get("/api/calls", headers=acme.headers)
    assert (refused.status_code, refused.json()["detail"]) == (401, "invalid API key")
    remaining = client.get("/api/keys", headers=bearer(created["api_key"])).json()["items"]
    assert [key["id"] for key in remaining] == [created["id"]]
    sources = client.get("/api/sources", headers=bearer(created["api_key"])).json()["items"]
    assert [source["id"] for source in sources] == [acme.source_id]


def test_a_key_may_delete_itself_but_not_the_orgs_last_key(client: TestClient) -> None:
    acme = tenant(client, "acme")
    created = create_key(client, acme.key, "short-lived")

    itself = client.delete(f"/api/keys/{created['id']}", headers=bearer(created["api_key"]))
    (last,) = client.get("/api/keys", headers=acme.headers).json()["items"]
    refused = client.delete(f"/api/keys/{last['id']}", headers=acme.headers)

    assert itself.status_code == 204
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "this is the org's last API key: create another (POST /api/keys) "
        "before deleting it",
    }
    assert client.get("/api/keys", headers=acme.headers).status_code == 200


def test_another_orgs_key_is_not_found_and_keeps_working(client: TestClient) -> None:
    acme, globex = tenant(client, "acme"), tenant(client, "globex")
    create_key(client, globex.key, "spare")  # so that deleting it would be allowed
    globex_first = client.get("/api/keys", headers=globex.headers).json()["items"][0]["id"]

    foreign = client.delete(f"/api/keys/{globex_first}", headers=acme.headers)
    unknown = client.delete("/api/keys/key_nope", headers=acme.headers)

    assert (foreign.status_code, foreign.json()["detail"]) == (404, f"no API key {globex_first!r}")
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "no API key 'key_nope'")
    assert client.get("/api/keys", headers=globex.headers).status_code == 200
    acme_keys = client.get("/api/keys", headers=acme.headers).json()["items"]
    assert len(acme_keys) == 1


def test_a_key_needs_a_name_and_an_org_key(client: TestClient) -> None:
    acme = tenant(client, "acme")

    results = [
        client.post("/api/keys", json={}, headers=acme.headers),
        client.post("/api/keys", json={"name": ""}, headers=acme.headers),
        client.post("/api/keys", json={"name": "x"}, headers=bearer("adm_test_token")),
        client.get("/api/keys"),
    ]

    assert [(r.status_code, r.json().get("field")) for r in results] == [
        (422, "name"),
        (422, "name"),
        (401, None),
        (401, None),
    ]
    assert len(client.get("/api/keys", headers=acme.headers).json()["items"]) == 1


def test_last_used_at_is_written_at_most_once_a_minute_per_key(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        org, secret = tenancy.create_org(session, tenancy.OrgIn(name="acme"), T0)
    updates: list[str] = []

    def count_updates(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_KEYS"):
            updates.append(statement)

    def last_used_after(seconds: float) -> object:
        with transaction(runtime.sessions) as session:
            found = keys.identify(session, secret, T0 + timedelta(seconds=seconds))
            assert found is not None
            assert found[1] == org.id
        with transaction(runtime.sessions) as session:
            return keys.list_keys(session, org.id)[0].last_used_at

    event.listen(runtime.engine, "before_cursor_execute", count_updates)
    try:
        seen = [last_used_after(s) for s in (0, 1, 30, 59.9, 60, 61, 119, 120.5)]
        writes_in_a_busy_minute = len(updates)
        for _ in range(50):
            last_used_after(121)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", count_updates)

    minute = T0 + timedelta(seconds=60)
    assert seen == [T0, T0, T0, T0, minute, minute, minute, T0 + timedelta(seconds=120.5)]
    assert (writes_in_a_busy_minute, len(updates)) == (3, 3)


def test_an_unknown_key_is_refused_and_writes_nothing(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        assert keys.identify(session, "cw_unknown", T0) is None
        assert keys.org_of(session, "cw_unknown") is None


@pytest.fixture
def empty_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the session's kind with no schema yet."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"callwatch_fresh_{secrets.token_hex(4)}"
    server = database_url.rsplit("/", 1)[0]
    admin = create_engine(
        f"{server}/postgres".replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_migration_names_existing_keys_and_goes_back(empty_database: str) -> None:
    config = migrate.config(empty_database)
    command.upgrade(config, "0009")
    engine = create_engine(empty_database.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO orgs (id, name, created_at) VALUES ('org_1', 'acme', :t)"),
                {"t": T0},
            )
            connection.execute(
                text(
                    "INSERT INTO api_keys (id, org_id, key_hash, prefix, created_at) "
                    "VALUES ('key_1', 'org_1', 'h', 'cw_abcd', :t)"
                ),
                {"t": T0},
            )
        command.upgrade(config, "0011")
        with engine.connect() as connection:
            upgraded = connection.execute(text("SELECT name, last_used_at FROM api_keys")).all()
        command.downgrade(config, "0009")
        with engine.connect() as connection:
            kept = connection.execute(text("SELECT id, prefix FROM api_keys")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in upgraded] == [("first key", None)]
    assert [tuple(row) for row in kept] == [("key_1", "cw_abcd")]


def test_two_deletions_racing_for_the_last_two_keys_leave_one(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        org, _ = tenancy.create_org(session, tenancy.OrgIn(name="acme"), T0)
        keys.issue(session, org.id, T0, name="second")
        first, second = (key.id for key in keys.list_keys(session, org.id))
    outcomes: list[str] = []

    def revoke_second() -> None:
        try:
            with transaction(runtime.sessions) as session:
                keys.revoke(session, org.id, second)
            outcomes.append("second deleted")
        except Conflict as exc:
            outcomes.append(exc.detail)

    with transaction(runtime.sessions) as session:
        keys.revoke(session, org.id, first)  # holds the org's lock until the commit below
        racer = threading.Thread(target=revoke_second)
        racer.start()
        racer.join(0.5)  # it waits for that lock (SQLite: for the write transaction)
        assert racer.is_alive()
    racer.join(10)

    with transaction(runtime.sessions) as session:
        remaining = [key.id for key in keys.list_keys(session, org.id)]
    assert outcomes == [
        "this is the org's last API key: create another (POST /api/keys) before deleting it"
    ]
    assert remaining == [second]
