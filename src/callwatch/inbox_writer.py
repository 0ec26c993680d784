"""Intake's Postgres inbox writer: stores a batch without blocking the web process's event loop.

A batch takes two round trips in libpq's pipeline mode: the INSERT with a Flush, which opens an
implicit transaction and returns the inserted ids, then a Sync, which commits it. A web process
killed before its Sync commits nothing (its webhooks got no reply, and their retries are new).
"""

import contextlib
import select
from collections.abc import Iterator

import psycopg
from psycopg import pq

from callwatch.db import PG_OPTIONS
from callwatch.errors import StoreUnavailable
from callwatch.inbox import PG_INSERT_SQL, InboxRow, batch_json

_STATEMENT = b"inbox_insert"


class InboxWriter:
    """One connection, at most one batch in flight; reconnects for the batch after a failure.

    `connect` blocks (run it off the event loop); `send` and `poll` do not. A batch that fails
    (either call raises) leaves the connection for its owner to `close`, once it no longer
    watches the socket: the server then rolls the batch back, and `connect` opens a new one.
    """

    def __init__(self, url: str, name: str) -> None:
        self._url = url.replace("postgresql+psycopg://", "postgresql://")
        self._name = name
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._inserted: set[str] | None = None  # the INSERT's ids, once it has answered

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def connect(self) -> None:
        """Open the connection and prepare the INSERT (raises StoreUnavailable)."""
        if self._connection is not None:
            return
        try:
            connection = psycopg.connect(
                self._url, autocommit=True, application_name=self._name, options=PG_OPTIONS
            )
            connection.pgconn.prepare(_STATEMENT, PG_INSERT_SQL.encode())
        except psycopg.Error as exc:
            raise StoreUnavailable(f"database unavailable: {exc}") from exc
        connection.pgconn.nonblocking = 1
        connection.pgconn.enter_pipeline_mode()
        self._connection = connection

    def send(self, rows: list[InboxRow]) -> None:
        """Start storing `rows` (raises StoreUnavailable if it cannot even start)."""
        self._inserted = None
        pgconn = self._in_flight()
        with _translated():
            pgconn.send_query_prepared(_STATEMENT, [batch_json(rows)])
            pgconn.send_flush_request()
            _flush(pgconn)

    def fileno(self) -> int:
        """The socket to wait on for the batch's progress."""
        return self._in_flight().socket

    def poll(self) -> set[str] | None:
        """The ids the batch inserted once its commit is in; None while it is under way."""
        pgconn = self._in_flight()
        with _translated():
            pgconn.consume_input()
            if pgconn.is_busy():
                return None
            result = pgconn.get_result()
            if self._inserted is None:
                result = _checked(result, pq.ExecStatus.TUPLES_OK)
                self._inserted = {
                    bytes(result.get_value(n, 0) or b"").decode() for n in range(result.ntuples)
                }
                pgconn.get_result()  # the end of the INSERT's results
                pgconn.pipeline_sync()
                _flush(pgconn)
                return None
            _checked(result, pq.ExecStatus.PIPELINE_SYNC)
        return self._inserted

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _in_flight(self) -> pq.abc.PGconn:
        if self._connection is None:
            raise StoreUnavailable("database unavailable: the connection was lost")
        return self._connection.pgconn


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"database unavailable: {exc}") from exc


def _flush(pgconn: pq.abc.PGconn) -> None:
    while pgconn.flush():  # 1: libpq's buffer is not all sent yet
        select.select([], [pgconn.socket], [])


def _checked(result: pq.abc.PGresult | None, expected: pq.ExecStatus) -> pq.abc.PGresult:
    if result is None or result.status != expected:
        raise _error(result)
    return result


def _error(result: pq.abc.PGresult | None) -> psycopg.Error:
    """The exception psycopg would raise for a failed result (its class from the SQLSTATE)."""
    if result is None:
        return psycopg.OperationalError("the connection closed")
    sqlstate = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
    try:
        kind = psycopg.errors.lookup(sqlstate)
    except KeyError:
        kind = psycopg.DatabaseError
    return kind(result.error_message.decode(errors="replace").strip())
