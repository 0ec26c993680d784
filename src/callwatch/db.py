"""Engine and session factory, a per-unit-of-work memo, and the portable insert-or-ignore."""

from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import Insert
from sqlalchemy.sql.schema import Table

from callwatch.errors import StoreUnavailable

T = TypeVar("T")

# JIT compiles a plan for ~50 ms; it pays off for analytics, never for these queries.
PG_OPTIONS = "-c jit=off"


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
    # Transactions are begun explicitly below, as BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # Take the write lock up front: a deferred transaction that reads and then writes can fail
    # with "database is locked" when another writer got there in between.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, name: str = "callwatch", **kwargs: Any) -> Engine:
    """`name` is the connections' application_name on Postgres (pg_stat_activity shows it).

    An error's message leaves out the statement's parameters: they hold tokens and bodies.
    """
    kwargs = {"hide_parameters": True} | kwargs
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    options = {
        "pool_pre_ping": True,
        "pool_size": 10,
        "max_overflow": 10,
        "connect_args": {"options": PG_OPTIONS, "application_name": name},
    } | kwargs
    return create_engine(url, **options)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work; an unreachable database surfaces as StoreUnavailable (retryable)."""
    try:
        with factory.begin() as session:
            yield session
    except (OperationalError, DBAPIError) as exc:
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            raise StoreUnavailable(f"database unavailable: {exc.orig}") from exc
        raise


def memo(session: Session, key: Hashable, make: Callable[[], T]) -> T:
    """`make()` once per session, which is one unit of work: for what it would read repeatedly."""
    cache: dict[Hashable, Any] = session.info.setdefault("memo", {})
    if key not in cache:
        cache[key] = make()
    return cast(T, cache[key])


def json_recordset(parameter: str, columns: Mapping[str, str]) -> str:
    """Postgres: many rows as one JSON document, `parameter`, read as a table `r` of `columns`
    (name → SQL type). One short statement psycopg prepares once, where a multi-row VALUES list
    or an executemany costs several times the CPU per row (bench/README.md)."""
    fields = ", ".join(f"{name} {kind}" for name, kind in columns.items())
    return f"jsonb_to_recordset(CAST({parameter} AS jsonb)) AS r({fields})"


def insert_ignore(session: Session, table: Table) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING for the session's dialect (Postgres and SQLite alike).

    Execute it with the rows as parameters (`session.execute(statement, rows)`): the statement
    then compiles once and is cached, where `.values(rows)` would compile anew for every batch.
    """
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    statement: Insert = module.insert(table).on_conflict_do_nothing()
    return statement
