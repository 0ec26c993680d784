"""Attempts in batches: one claim for a subscription's due deliveries, a crash between send and
settle, and subscription rate limits held across a real worker."""

from datetime import timedelta

import pytest
import redis
from sqlalchemy import select

from callwatch.db import transaction
from callwatch.downstream import attempts
from callwatch.downstream.effects import Effects
from callwatch.downstream.posting import send
from callwatch.downstream.streams import RATE_LIMITED
from callwatch.ratelimits import bucket_key
from callwatch.runtime import COUNTERS, Runtime
from callwatch.settings import Settings
from callwatch.tables import Delivery
from tests.downstream.test_deliveries import (
    FAST,
    Receiver,
    fan_out,
    log_of,
    settled,
    subscribe,
    summary,
)
from tests.factories import tenant
from workers.tasks import dispatch

DELIVERED = (1, 200, "delivered", None)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


def ids_at(receiver: Receiver, path: str = "hook") -> list[str]:
    return sorted(request.headers["webhook-id"] for request in receiver.at(path))


def test_one_message_sends_its_subscriptions_due_deliveries_in_one_batch(
    client, runtime, receiver
) -> None:
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook"))
    other = subscribe(client, owner, receiver.script("other"))
    created = [fan_out(runtime, owner, f"call_{n}") for n in range(3)]  # one for each
    mine = sorted(pair[0] for pair in created if _of(runtime, pair[0]) == subscription["id"])
    theirs = sorted(each for pair in created for each in pair if each not in mine)

    first = attempts.deliver(runtime, mine[0])
    again = [attempts.deliver(runtime, each) for each in mine[1:]]  # the batch took them

    assert (first, again) == ({}, [{}, {}])
    assert (ids_at(receiver), ids_at(receiver, "other")) == (mine, [])
    items = log_of(client, owner, subscription["id"])
    assert [summary(item)["attempts"] for item in items] == [[DELIVERED]] * 3
    assert [item["state"] for item in log_of(client, owner, other["id"])] == ["pending"] * 3
    assert len(theirs) == 3


def _of(runtime: Runtime, delivery_id: str) -> str:
    with runtime.sessions() as session:
        return session.get_one(Delivery, delivery_id).subscription_id


def test_the_batch_size_caps_a_claim(client, runtime, receiver) -> None:
    runtime.settings = runtime.settings.model_copy(update={"delivery_batch": 2})
    owner = tenant(client, "acme")
    subscribe(client, owner, receiver.script("hook"))
    created = [fan_out(runtime, owner, f"call_{n}")[0] for n in range(3)]

    attempts.deliver(runtime, created[2])
    after_one = ids_at(receiver)
    attempts.deliver(runtime, created[2])

    assert (after_one, ids_at(receiver)) == (sorted(created[:2]), sorted(created))  # oldest first


def test_a_crash_between_send_and_settle_sends_again_once_the_lease_lapses(
    client, runtime, receiver
) -> None:
    owner = tenant(client, "acme")
    subscription = subscribe(client, owner, receiver.script("hook"))
    created = [fan_out(runtime, owner, f"call_{n}")[0] for n in range(3)]
    with transaction(runtime.sessions) as session:
        batch = attempts.claim(session, runtime, created[0], runtime.clock())
    sent = [send(runtime.outbound, job, runtime.clock(), 1.0) for job in batch.jobs]
    # ...and the worker dies here, before settling: the receiver has all three.
    before_lapse = attempts.deliver(runtime, created[0])
    lapsed = runtime.clock() + timedelta(seconds=runtime.settings.delivery_lease_s)
    runtime.clock = lambda: lapsed

    after_lapse = attempts.deliver(runtime, created[1])

    assert (len(sent), before_lapse, after_lapse) == (3, {}, {})
    assert ids_at(receiver) == sorted(created * 2)  # the receiver drops repeats by webhook-id
    lost = (1, None, "interrupted", "the worker was lost mid-attempt")
    items = log_of(client, owner, subscription["id"])
    assert [summary(item)["attempts"] for item in items] == [
        [lost, (2, 200, "delivered", None)]
    ] * 3
    assert {item["state"] for item in items} == {"delivered"}


def test_deliveries_past_the_rate_limit_wait_without_spending_an_attempt(
    client, runtime, receiver
) -> None:
    owner = tenant(client, "acme")
    subscription = subscribe(
        client, owner, receiver.script("hook"), rate_limit={"per_second": 1, "burst": 2}
    )
    redis.Redis.from_url(runtime.settings.redis_url).delete(
        bucket_key("subscription", subscription["id"]), COUNTERS
    )
    created = [fan_out(runtime, owner, f"call_{n}")[0] for n in range(5)]

    first = attempts.deliver(runtime, created[4])  # a batch: at most a burst
    limited = attempts.deliver(runtime, created[4])  # the bucket is empty

    assert (first, ids_at(receiver)) == ({}, sorted(created[:2]))
    assert list(limited) == created[2:4]  # oldest first, spaced at the rate
    assert limited[created[3]] - limited[created[2]] == pytest.approx(1.0)
    assert 0 < limited[created[2]] <= 1.0
    with runtime.sessions() as session:
        waiting = session.scalars(
            select(Delivery).where(Delivery.id.in_(created[2:])).order_by(Delivery.created_at)
        ).all()
    assert [(each.state, each.attempts, each.lease_until) for each in waiting] == [
        ("pending", 0, None)
    ] * 3
    counted = redis.Redis.from_url(runtime.settings.redis_url).hget(COUNTERS, RATE_LIMITED)
    assert counted == b"2"


def test_a_rate_limit_holds_across_a_real_worker_and_every_delivery_arrives_once(
    client, runtime, worker, receiver
) -> None:
    per_second, burst, count = 5, 5, 20
    owner = tenant(client, "acme")
    subscription = subscribe(
        client,
        owner,
        receiver.script("hook"),
        rate_limit={"per_second": per_second, "burst": burst},
    )
    redis.Redis.from_url(runtime.settings.redis_url).delete(
        bucket_key("subscription", subscription["id"]), COUNTERS
    )

    created = [fan_out(runtime, owner, f"call_{n}")[0] for n in range(count)]
    dispatch(Effects(created))  # all due at once: the first batch is a whole burst
    items = settled(client, owner, subscription["id"], count=count, timeout=60)

    arrivals = sorted(request.at for request in receiver.at("hook"))
    start = arrivals[0]
    # The bucket started full: by t seconds after the first send, at most burst + rate * t
    # (one token of slack for the first send's own way to the receiver).
    over = [
        (n, round(at - start, 3))
        for n, at in enumerate(arrivals, 1)
        if n > burst + per_second * (at - start) + 1
    ]
    assert over == [], [round(at - start, 3) for at in arrivals]
    # The burst goes at once, not paced (how many more the refill lets by is `over`'s bound).
    assert sum(1 for at in arrivals if at - start < 0.5) >= burst
    assert arrivals[-1] - start >= (count - burst) / per_second - 1 / per_second
    assert ids_at(receiver) == sorted(created)  # each exactly once
    assert [summary(item)["attempts"] for item in items] == [[DELIVERED]] * count
    counted = redis.Redis.from_url(runtime.settings.redis_url).hget(COUNTERS, RATE_LIMITED)
    assert int(counted or 0) >= count - 2 * burst  # put off, not failed
