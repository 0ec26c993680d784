"""Migration 0010 (source management): the schema tables/ declares, sources and their calls
kept across an upgrade and a downgrade."""

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from callwatch import migrate
from callwatch.db import make_engine
from callwatch.tables import Base


def _engine_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def fresh_database(tmp_path: Path) -> Iterator[str]:
    """An empty database of the kind the tests run on."""
    target = os.environ.get("CALLWATCH_TEST_DATABASE", "sqlite")
    if target == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"callwatch_migration_{secrets.token_hex(4)}"
    admin = create_engine(_engine_url(target), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield target.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def sources_differences(url: str) -> list[Any]:
    engine = make_engine(url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    return [d for d in differences if _table_of(d) == "sources"]


def _table_of(difference: Any) -> str:
    """The table an autogenerate difference is about (a column change comes as a list)."""
    first = difference[0] if isinstance(difference, list) else difference
    if first[0] in ("add_column", "remove_column") or first[0].startswith("modify_"):
        return str(first[2])
    changed = first[1]
    return str(getattr(changed, "table", changed).name)


def test_the_migrated_sources_table_is_the_one_tables_declares(database_url: str) -> None:
    assert sources_differences(database_url) == []


ROWS = [
    "INSERT INTO orgs (id, name, created_at) VALUES ('org_1', 'acme', CURRENT_TIMESTAMP)",
    "INSERT INTO sources (id, org_id, name, provider, webhook_token, settings, credentials, "
    "created_at) VALUES ('src_1', 'org_1', 'main', 'generic', 'tok', '{}', 'x', "
    "CURRENT_TIMESTAMP)",
    "INSERT INTO calls (id, org_id, source_id, provider, provider_call_id, started_at, fields, "
    "assembly_state, assembly_attempts, assembly_failures, has_recording, created_at, "
    "updated_at) VALUES ('call_1', 'org_1', 'src_1', 'generic', 'p-1', CURRENT_TIMESTAMP, '{}', "
    "'assembled', 1, 0, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
]


def test_upgrade_and_downgrade_keep_the_sources_and_their_calls(fresh_database: str) -> None:
    config = migrate.config(fresh_database)
    command.upgrade(config, "0009")
    engine = make_engine(fresh_database)
    with engine.begin() as connection:
        for row in ROWS:
            connection.execute(text(row))

    command.upgrade(config, "0010")
    with engine.connect() as connection:
        upgraded = connection.execute(
            text("SELECT id, enabled, deleted_at, previous_token FROM sources")
        ).all()
    command.downgrade(config, "0009")
    command.upgrade(config, "head")
    with engine.connect() as connection:
        calls = connection.execute(text("SELECT id, source_id FROM calls")).all()
    engine.dispose()

    assert [tuple(row) for row in upgraded] == [("src_1", True, None, None)]
    assert [tuple(row) for row in calls] == [("call_1", "src_1")]
    assert sources_differences(fresh_database) == []
