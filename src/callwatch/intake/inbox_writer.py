"""Intake's Postgres inbox writer: stores a batch without blocking the web process's event loop.

A batch takes two round trips in libpq's pipeline mode: the INSERT with a Flush, which opens an
implicit transaction and returns the inserted ids, then a Sync, which commits it. A web process
killed before its Sync commits nothing (its webhooks got no reply, and their retries are new).

Nothing here waits: what libpq cannot send at once waits for the socket to have room
(`wants_write`), and no call blocks the event loop. A batch whose INSERT fails on its data
(`storable.is_data_error`) is synced before the error is raised, so the connection
stays usable for the halves intake stores next; any other failure leaves it to be closed.
"""

import contextlib
from collections.abc import Iterator

import psycopg
from psycopg import pq

from callwatch.db import PG_OPTIONS
from callwatch.errors import StoreUnavailable
from callwatch.intake.inbox import PG_INSERT_SQL, InboxRow, batch_json
from callwatch.intake.storable import is_data_error

_STATEMENT = b"inbox_insert"
CONNECT_TIMEOUT_S = 2  # libpq's smallest; intake's batch deadline is shorter and answers first


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
        self._rejected: psycopg.Error | None = None  # the INSERT's data error, raised after Sync
        self._syncing = False
        self._unsent = False  # libpq holds bytes the socket had no room for yet

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def connect(self) -> None:
        """Open the connection and prepare the INSERT (raises StoreUnavailable)."""
        if self._connection is not None:
            return
        try:
            connection = psycopg.connect(
                self._url,
                autocommit=True,
                application_name=self._name,
                options=PG_OPTIONS,
                connect_timeout=CONNECT_TIMEOUT_S,
            )
            connection.pgconn.prepare(_STATEMENT, PG_INSERT_SQL.encode())
        except psycopg.Error as exc:
            raise StoreUnavailable(f"database unavailable: {exc}") from exc
        connection.pgconn.nonblocking = 1
        connection.pgconn.enter_pipeline_mode()
        self._connection = connection

    def send(self, rows: list[InboxRow]) -> None:
        """Start storing `rows` (raises StoreUnavailable if it cannot even start, DataError if
        the rows cannot be encoded: nothing was sent then)."""
        self._inserted, self._rejected, self._syncing = None, None, False
        pgconn = self._in_flight()
        try:
            document = batch_json(rows)
        except ValueError as exc:  # e.g. a lone surrogate, which UTF-8 cannot encode
            raise psycopg.DataError(f"the rows cannot be encoded: {exc}") from exc
        with _translated():
            pgconn.send_query_prepared(_STATEMENT, [document])
            pgconn.send_flush_request()
            self._unsent = pgconn.flush() == 1

    @property
    def wants_write(self) -> bool:
        """Whether to wait for room on the socket too (then `poll` sends the rest)."""
        return self._unsent

    def fileno(self) -> int:
        """The socket to wait on for the batch's progress."""
        return self._in_flight().socket

    def poll(self) -> set[str] | None:
        """The ids the batch inserted once its commit is in; None while it is under way."""
        pgconn = self._in_flight()
        with _translated():
            if self._unsent:
                self._unsent = pgconn.flush() == 1
            pgconn.consume_input()
            if pgconn.is_busy():
                return None
            result = pgconn.get_result()
            if not self._syncing:
                self._insert_answered(pgconn, result)
                return None
            _checked(result, pq.ExecStatus.PIPELINE_SYNC)
        if self._rejected is not None:
            raise self._rejected
        assert self._inserted is not None
        return self._inserted

    def _insert_answered(self, pgconn: pq.abc.PGconn, result: pq.abc.PGresult | None) -> None:
        if result is not None and result.status == pq.ExecStatus.TUPLES_OK:
            self._inserted = {
                bytes(result.get_value(n, 0) or b"").decode() for n in range(result.ntuples)
            }
        else:
            error = _error(result)
            if not is_data_error(error):
                raise error  # the connection is in doubt: its owner closes it
            self._rejected = error  # the server rolls the batch back at the Sync
        pgconn.get_result()  # the end of the INSERT's results
        pgconn.pipeline_sync()
        self._syncing = True
        self._unsent = pgconn.flush() == 1

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
