"""`callwatch up`'s status line: its counts, read from the database."""

import io
from datetime import timedelta

from sqlalchemy import update
from starlette.testclient import TestClient

from callwatch.cli.status import Counts, StatusLine, read
from callwatch.db import transaction
from callwatch.runtime import Runtime
from callwatch.tables import Call
from tests.cli.test_lookups import three_calls
from tests.factories import T0


def test_the_counts_are_since_the_start_but_the_backlog(
    client: TestClient, runtime: Runtime
) -> None:
    three_calls(client, runtime)  # started T0, T0 + 1 day, T0 + 2 days
    with transaction(runtime.sessions) as session:
        session.execute(update(Call).where(Call.id == "c1").values(assembly_state="failed"))
        session.execute(update(Call).where(Call.id == "c2").values(assembly_state="fetching"))

    assert read(runtime.sessions, T0 - timedelta(hours=1)) == Counts(
        received=0, assembled=1, failed=1, backlog=1
    )
    assert read(runtime.sessions, T0 + timedelta(days=3)) == Counts(
        received=0, assembled=0, failed=0, backlog=1
    )


def test_the_line_away_from_a_terminal_is_the_last_one() -> None:
    out = io.StringIO()
    with StatusLine(out) as status:
        status.show(None)
        status.show(Counts(received=12, assembled=3, failed=1, backlog=4), "demo: 3 calls played")

    assert out.getvalue().splitlines()[-1] == (
        "12 events received · 3 calls assembled · 4 waiting · 1 failed · demo: 3 calls played"
    )
