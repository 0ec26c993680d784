"""Intake's Postgres inbox writer: stores a batch without waiting, so intake parses the next.

A batch is BEGIN, INSERT, COMMIT, each sent when the one before has answered: an intake killed
while its INSERT waits commits nothing (its webhooks got a 503, and their retries are new).
"""

import selectors

import psycopg
from psycopg import pq

from callwatch.db import PG_OPTIONS
from callwatch.errors import StoreUnavailable
from callwatch.inbox import PG_INSERT_SQL, InboxRow, batch_json

_STATEMENT = b"inbox_insert"
_SUCCESS = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)


class InboxWriter:
    """One connection, at most one batch in flight; reconnects for the batch after a failure."""

    def __init__(self, url: str, name: str) -> None:
        self._url = url.replace("postgresql+psycopg://", "postgresql://")
        self._name = name
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._batch = b""
        self._steps: list[str] = []
        self._inserted: set[str] = set()

    def send(self, rows: list[InboxRow]) -> None:
        """Start storing `rows` (raises StoreUnavailable if it cannot even start)."""
        self._batch = batch_json(rows)
        self._steps = ["BEGIN", "INSERT", "COMMIT"]
        self._inserted = set()
        self._next()

    def fileno(self) -> int:
        """The socket to wait on for the batch's progress."""
        return self._in_flight().socket

    def poll(self) -> set[str] | None:
        """The ids the batch inserted once its commit is in; None while it is under way."""
        pgconn = self._in_flight()
        try:
            pgconn.consume_input()
            if pgconn.is_busy():
                return None
            result = pgconn.get_result()
            while pgconn.get_result() is not None:
                pass
        except psycopg.Error as exc:
            raise self._lost(exc) from exc
        if result is None or result.status not in _SUCCESS:
            error = _error(result)
            self.close()  # the server rolls the transaction back
            if isinstance(error, psycopg.OperationalError):
                raise StoreUnavailable(f"database unavailable: {error}") from error
            raise error
        if result.status == pq.ExecStatus.TUPLES_OK:
            self._inserted = {
                bytes(result.get_value(n, 0) or b"").decode() for n in range(result.ntuples)
            }
        if self._steps:
            self._next()
            return None
        return self._inserted

    def _next(self) -> None:
        step = self._steps.pop(0)
        try:
            pgconn = self._pgconn()
            if step == "INSERT":
                pgconn.send_query_prepared(_STATEMENT, [self._batch])
            else:
                pgconn.send_query_params(step.encode(), None)
            with selectors.DefaultSelector() as selector:
                selector.register(pgconn.socket, selectors.EVENT_WRITE)
                while pgconn.flush():
                    selector.select()
        except psycopg.Error as exc:
            raise self._lost(exc) from exc

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _pgconn(self) -> pq.abc.PGconn:
        if self._connection is None:
            try:
                connection = psycopg.connect(
                    self._url, autocommit=True, application_name=self._name, options=PG_OPTIONS
                )
                connection.pgconn.prepare(_STATEMENT, PG_INSERT_SQL.encode())
            except psycopg.Error as exc:
                raise StoreUnavailable(f"database unavailable: {exc}") from exc
            connection.pgconn.nonblocking = 1
            self._connection = connection
        return self._connection.pgconn

    def _in_flight(self) -> pq.abc.PGconn:
        if self._connection is None:
            raise StoreUnavailable("database unavailable: the connection was lost")
        return self._connection.pgconn

    def _lost(self, exc: Exception) -> StoreUnavailable:
        self.close()
        return StoreUnavailable(f"database unavailable: {exc}")


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
