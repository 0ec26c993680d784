"""`callwatch replay`: calls assembled again from their stored events, quarantined events sent
to the workers again."""

import argparse
import sys
from typing import TYPE_CHECKING

from callwatch.cli.commands import Adder, Subcommands
from callwatch.cli.failures import require_database
from callwatch.errors import ReplayError, RequestError

if TYPE_CHECKING:
    from callwatch.pipeline.replay import Selection, Target
    from callwatch.queue import Producer
    from callwatch.runtime import Runtime
    from callwatch.settings import Settings

REPLAY_BATCH = 100  # calls per transaction and per LPUSH


def add_commands(add: Adder, commands: Subcommands) -> None:
    replay = add("replay", cmd_replay, "assemble calls again from their stored events", commands)
    replay.add_argument("call_ids", nargs="*", metavar="CALL_ID", help="callwatch or provider id")
    replay.add_argument("--failed", action="store_true", help="every call whose assembly failed")
    replay.add_argument(
        "--quarantined",
        action="store_true",
        help="every quarantined event (`callwatch quarantine list`): sent to the workers again",
    )
    replay.add_argument("--org", help="only this org's calls (name or id)")
    replay.add_argument("--source", help="only this source's calls (id, or name with --org)")
    replay.add_argument(
        "--since",
        metavar="ISO8601",
        help="with --failed: started at or after (UTC if no zone); "
        "with --quarantined: received at or after",
    )
    replay.add_argument(
        "--until",
        metavar="ISO8601",
        help="with --failed: started at or before, a date: that day; with --quarantined: received",
    )
    replay.add_argument("--dry-run", action="store_true", help="list them, change nothing")
    replay.add_argument("--redis-url", help="default: $CALLWATCH_REDIS_URL")


def cmd_replay(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.db import transaction
    from callwatch.errors import StoreUnavailable
    from callwatch.pipeline import replay
    from callwatch.runtime import opened
    from callwatch.validation import parse_query

    chosen = {name: getattr(args, name) for name in replay.Selection.model_fields}
    selection = parse_query(replay.Selection, chosen)
    require_database(settings)
    if selection.quarantined:
        return _replay_quarantined(args, settings, selection)
    try:
        with opened(settings) as rt:
            with transaction(rt.sessions) as session:
                plan = replay.plan(session, selection)
            targets, left = plan.replay, dict(plan.left_alone)
            if targets and not args.dry_run:
                done = set(_replay(rt, args.redis_url or settings.redis_url, targets))
                late = [target.call_id for target in targets if target.call_id not in done]
                left |= dict.fromkeys(late, "its assembly started meanwhile")
                targets = [target for target in targets if target.call_id in done]
    except StoreUnavailable as exc:
        raise ReplayError(f"{exc}; check CALLWATCH_DATABASE_URL") from exc
    for call_id, reason in left.items():
        print(replay.left_line(call_id, reason), file=sys.stderr)
    for target in targets:
        print(replay.line(target))
    print(replay.summary(len(targets), len(left), dry_run=args.dry_run))
    return 1 if left else 0


def _replay_quarantined(
    args: argparse.Namespace, settings: "Settings", selection: "Selection"
) -> int:
    """Send the chosen quarantined events to the workers again, as intake sends new ones."""
    from redis import RedisError

    from callwatch.db import transaction
    from callwatch.errors import StoreUnavailable
    from callwatch.pipeline import quarantine, replay
    from callwatch.runtime import opened

    try:
        with opened(settings) as rt, transaction(rt.sessions) as session:
            chosen = replay.quarantined(session, selection)
    except StoreUnavailable as exc:
        raise ReplayError(f"{exc}; check CALLWATCH_DATABASE_URL") from exc
    for event in chosen:
        print(quarantine.line(event))
    if chosen and not args.dry_run:
        producer = _producer(args.redis_url or settings.redis_url)
        try:
            ids = [event.event_id for event in chosen]
            for start in range(0, len(ids), REPLAY_BATCH):
                producer.ingest(ids[start : start + REPLAY_BATCH])
        except RedisError as exc:
            raise ReplayError(f"lost Redis ({exc}): run the same replay again") from exc
        finally:
            producer.close()
    print(replay.quarantined_summary(len(chosen), dry_run=args.dry_run))
    return 0


def _producer(redis_url: str | None) -> "Producer":
    """A producer on the workers' Redis, reached once already."""
    from redis import RedisError

    from callwatch.cli.tail import shown_url
    from callwatch.queue import Producer

    if not redis_url:
        raise RequestError(
            "no Redis URL: pass --redis-url or set CALLWATCH_REDIS_URL (the Redis that "
            "callwatch's workers use; `callwatch up` prints it)"
        )
    producer = Producer(redis_url)
    try:
        producer.ping()
    except RedisError as exc:
        producer.close()
        raise ReplayError(
            f"cannot reach Redis at {shown_url(redis_url)} ({exc}); nothing was replayed"
        ) from exc
    return producer


def _replay(rt: "Runtime", redis_url: str | None, targets: "list[Target]") -> list[str]:
    """Replay in batches, a transaction each, queued once committed; the calls replayed."""
    from redis import RedisError

    from callwatch.db import transaction
    from callwatch.pipeline import replay
    from callwatch.runtime import utcnow

    producer = _producer(redis_url)
    done: list[str] = []
    try:
        for start in range(0, len(targets), REPLAY_BATCH):
            batch = [target.call_id for target in targets[start : start + REPLAY_BATCH]]
            with transaction(rt.sessions) as session:
                ready = replay.replay(session, batch, utcnow())
            # Committed first: if this message is lost, the sweeper sends it (they are due now).
            producer.assemble(ready)
            done += ready
            print(replay.progress(start + len(batch), len(targets)), end="", file=sys.stderr)
    except RedisError as exc:
        raise ReplayError(
            f"lost Redis ({exc}) after {len(done)} calls: the sweeper queues the last batch; "
            "run the same replay again for the rest"
        ) from exc
    finally:
        producer.close()
    print(file=sys.stderr)
    return done
