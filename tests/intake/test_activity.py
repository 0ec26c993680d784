"""Each source's webhook activity: noted in the process, flushed to Redis once a second, read
back per window — through the real receiver, a real Redis and the pages that show it."""

import asyncio
import json
import re
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
import redis.asyncio
from starlette.testclient import TestClient

from callwatch.intake import activity
from callwatch.intake.activity import SourceActivity, Tally
from tests.conftest import create_org, create_source, path_of, signed
from tests.dashboard.signing_in import sign_in
from tests.intake.test_endpoints import event

HOUR = 3600


def test_a_window_is_tiled_by_hours_up_to_a_midnight_then_days_then_hours() -> None:
    since = 10 * 86400 + 22 * HOUR + 1800  # day 10, 22:30
    until = 13 * 86400 + 1 * HOUR + 60  # day 13, 01:01
    assert activity.window_keys("org_1", since, until) == [
        "callwatch:activity:org_1:h:262",
        "callwatch:activity:org_1:h:263",
        "callwatch:activity:org_1:d:11",
        "callwatch:activity:org_1:d:12",
        "callwatch:activity:org_1:h:312",
        "callwatch:activity:org_1:h:313",
    ]


def test_ninety_days_read_at_most_137_hashes() -> None:
    until = time.time()
    keys = activity.window_keys("org_1", until - 90 * 86400, until)
    assert len(keys) <= 23 + 90 + 24


def _written(client: redis.Redis, tally: Tally, at: datetime) -> None:
    pipe = client.pipeline()
    activity.write(pipe, tally.take(), at.timestamp())
    pipe.execute()


def test_counts_written_are_read_back_per_window(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    now = datetime.now(UTC)
    three_days_ago, tally = now - timedelta(days=3), Tally()
    tally.note(("org_1", "src_a"), "accepted")
    tally.note(("org_1", "src_a"), "accepted")
    _written(client, tally, three_days_ago)
    for outcome in ("accepted", "accepted", "duplicate", "rejected", "limited"):
        tally.note(("org_1", "src_a"), outcome)
    tally.note(("org_2", "src_b"), "accepted")
    _written(client, tally, now)

    day = activity.read(client, "org_1", now - timedelta(hours=24), now)
    week = activity.read(client, "org_1", now - timedelta(days=7), now)

    assert day == {"src_a": SourceActivity(now, accepted=3, refused=2, limited=1)}
    assert week == {"src_a": SourceActivity(now, accepted=5, refused=2, limited=1)}
    old_hour = int(three_days_ago.timestamp() // HOUR)
    assert 0 < client.ttl(activity.hour_key("org_1", old_hour)) <= activity.KEEP_S
    assert tally.counts == {}


def test_the_last_webhook_time_never_moves_back(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    now, tally = datetime.now(UTC), Tally()
    tally.note(("org_1", "src_a"), "accepted")
    _written(client, tally, now)
    tally.note(("org_1", "src_a"), "accepted")
    _written(client, tally, now - timedelta(seconds=30))  # a slower process's flush

    found = activity.read(client, "org_1", now - timedelta(hours=1), now)

    assert found["src_a"].last_at == now


def test_a_failed_flush_keeps_its_counts_for_the_next() -> None:
    tally = Tally()
    tally.note(("org_1", "src_a"), "accepted")
    taken = tally.take()
    tally.note(("org_1", "src_a"), "rejected")
    tally.put_back(taken)
    assert tally.counts == {
        (("org_1", "src_a"), "accepted"): 1,
        (("org_1", "src_a"), "rejected"): 1,
    }


def _cells(html: str) -> list[str]:
    """The traffic cells of the sources table's first row: accepted, refused, backlog."""
    table = html.split('id="sources"')[1].split("</table>")[0]
    found = re.search(
        r'<td class="num accepted">([^<]*)</td><td class="num refused">(.*?)</td>'
        r'<td class="num backlog">([^<]*)</td>',
        table,
    )
    assert found is not None, table
    return list(found.groups())


@pytest.mark.timeout(60)
def test_the_receivers_outcomes_reach_the_pages(client: TestClient) -> None:
    key = create_org(client)
    source = create_source(client, key, settings={"rate_limit": {"per_second": 0.01, "burst": 3}})
    url, secret = path_of(source["webhook_url"]), source["webhook_secret"]
    first = json.dumps(event(call_id="c1")).encode()
    second = json.dumps(event(call_id="c2")).encode()
    answers = [
        client.post(url, content=first, headers=signed(secret, first, msg_id="m1")).status_code,
        client.post(url, content=first, headers=signed(secret, first, msg_id="m1")).status_code,
        client.post(url, content=second, headers=signed("whsec_" + "A" * 32, second)).status_code,
        client.post(url, content=second, headers=signed(secret, second)).status_code,
    ]
    assert answers == [202, 202, 401, 429]
    sign_in(client, key)

    deadline = time.monotonic() + 10  # flushed within a second
    while time.monotonic() < deadline:
        page = client.get("/sources").text
        if _cells(page)[0] != "0":
            break
        time.sleep(0.2)
    overview = client.get("/").text

    # Accepted: the new event and its duplicate; refused: the bad signature and the 429; the
    # stored event waits for a worker (none here): a backlog of one.
    expected = ["2", '2 <span class="muted">(1 limited)</span>', "1"]
    assert _cells(page) == expected
    assert _cells(overview) == expected
    assert re.search(r'<td class="last-webhook">\d{4}-\d\d-\d\d [\d:]+ UTC</td>', page)


def test_a_flush_redis_does_not_answer_keeps_the_counts() -> None:
    tally = Tally()
    tally.note(("org_1", "src_a"), "accepted")
    unreachable = redis.asyncio.Redis(port=_closed_port(), socket_connect_timeout=0.2)
    flusher = activity.Flusher(tally, unreachable)

    asyncio.run(flusher.flush())

    assert (flusher.failures, tally.counts) == (1, {(("org_1", "src_a"), "accepted"): 1})


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
