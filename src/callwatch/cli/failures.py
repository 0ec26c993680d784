"""What went wrong, in one line that says what to do next, instead of a traceback."""

from typing import TYPE_CHECKING

from callwatch.errors import RequestError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from callwatch.settings import Settings

MIGRATE = "run `callwatch migrate` with the same CALLWATCH_DATABASE_URL"
DATABASE_URL_FORMS = "postgresql://USER:PASSWORD@HOST:5432/DB or sqlite:///PATH/callwatch.db"
UNDEFINED_TABLE = "42P01"  # Postgres's SQLSTATE for a table that does not exist


def explain(exc: BaseException) -> str | None:
    """The line for an error people can fix themselves; None for a bug (the traceback stays)."""
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, OperationalError

    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return "; ".join(_setting_line(error) for error in exc.errors())
    chain = list(_chain(exc))
    if any(_missing_table(item) for item in chain):
        return f"the database has no callwatch tables yet: {MIGRATE}"
    if any(isinstance(item, ArgumentError) for item in chain):
        # The URL itself is not repeated: it may hold a password.
        return f"CALLWATCH_DATABASE_URL is not a database URL; use {DATABASE_URL_FORMS}"
    for item in chain:
        if isinstance(item, OperationalError):
            return (
                f"cannot reach the database ({item.orig}); check CALLWATCH_DATABASE_URL "
                f"and {MIGRATE}"
            )
    return None


def require_database(settings: "Settings") -> None:
    """A read-only command opens an existing database, never creates one (an SQLite file that is
    not there is a wrong directory or URL)."""
    from pathlib import Path

    from sqlalchemy import make_url

    url = make_url(settings.database_url)
    if (
        url.get_backend_name() == "sqlite"
        and url.database not in (None, "", ":memory:")
        and not Path(url.database).exists()
    ):
        raise RequestError(
            f"no database at {url.database}: run this where `callwatch up` runs, "
            "set CALLWATCH_DATABASE_URL, or run `callwatch migrate` to create it"
        )


def _chain(exc: BaseException) -> "list[BaseException]":
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _missing_table(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    return "no such table" in str(orig) or getattr(orig, "sqlstate", None) == UNDEFINED_TABLE


def _setting_line(error: "ErrorDetails") -> str:
    name = ".".join(str(part) for part in error["loc"])
    return f"CALLWATCH_{name.upper()}: {error['msg']}"
