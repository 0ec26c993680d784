"""The `callwatch` command line."""

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from callwatch.cli import (
    alert_rules,
    commands,
    erasure,
    exports,
    failures,
    keys,
    lookups,
    provisioning,
    replays,
    rollups,
    subscriptions,
)
from callwatch.cli.commands import CommandParser, Handler, Subcommands
from callwatch.errors import CallwatchError

if TYPE_CHECKING:
    from callwatch.cli.terminal import Http
    from callwatch.settings import Settings


def _fail(message: str) -> int:
    print(f"callwatch: {message}", file=sys.stderr)
    return 2


def cmd_serve(args: argparse.Namespace, settings: "Settings") -> int:
    import uvicorn

    from callwatch.app import create_app

    if args.workers < 1:
        return _fail("--workers takes 1 or more processes")
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "loop": args.loop,
        "log_level": "warning",
        "access_log": False,
        # In-flight requests get this long after SIGTERM; intake answers its batches 503 then.
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
    }
    if args.workers == 1:
        uvicorn.run(create_app(settings), **options)
    else:
        # Each process builds its own app from the environment, and its lifespan its own
        # runtime, producer and intake writer; uvicorn's parent only holds the socket.
        uvicorn.run("callwatch.app:create_app", factory=True, workers=args.workers, **options)
    return 0


def _celery(argv: list[str]) -> int:
    from workers.app import app

    app.start(argv)
    return 0


def cmd_worker(args: argparse.Namespace, settings: "Settings") -> int:
    return _celery(
        [
            "worker",
            "--loglevel",
            "WARNING",
            "--pool",
            "threads",
            "--concurrency",
            str(args.concurrency),
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            args.hostname,
        ]
    )


def cmd_beat(args: argparse.Namespace, settings: "Settings") -> int:
    schedule = settings.data_dir / "beat-schedule"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return _celery(["beat", "--loglevel", "WARNING", "--schedule", str(schedule)])


def cmd_migrate(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.migrate import upgrade

    if settings.database_url.startswith("sqlite:///./"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    print("database is at the latest schema")
    return 0


def cmd_simulate(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.simulator import PLATFORMS, Progress, run_simulation

    secret_name = PLATFORMS[args.provider].secret_name
    if secret_name and not args.secret:
        return _fail(
            f"{args.provider} webhooks are signed: pass --secret with the source's webhook "
            f"secret ({secret_name})"
        )

    def show(progress: Progress) -> None:
        print(
            f"\rcalls {progress.calls_done}/{args.calls}  sent {progress.sent}  "
            f"accepted {progress.accepted}  duplicates {progress.duplicates}  "
            f"rejected {sum(progress.rejected.values())}  errors {progress.errors}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    result = run_simulation(
        args.url,
        args.secret or "",
        calls=args.calls,
        rate=args.rate,
        seed=args.seed,
        on_progress=show,
        provider=args.provider,
        calls_url=args.calls_url,
        calls_secret=args.calls_secret or "",
    )
    show(result)
    print(file=sys.stderr)
    if result.rejected or result.errors:
        check = "--url and --secret" if secret_name else "--url"
        return _fail(
            f"{sum(result.rejected.values())} rejected, {result.errors} connection "
            f"errors ({dict(result.rejected)}); check {check}"
        )
    return 0


def cmd_tail(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.cli import tail

    url = args.redis_url or settings.redis_url
    if not url:
        return _fail(
            "no Redis URL: pass --redis-url or set CALLWATCH_REDIS_URL "
            "(the Redis that callwatch's workers use)"
        )
    return tail.run(
        url, args.stream, from_start=args.from_start, as_json=args.json, count=args.count
    )


def cmd_up(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.cli.up import run_up

    demo = args.provider if args.demo else None
    return run_up(settings, demo=demo, host=args.host, port=args.port, verbose=args.verbose)


class _Version(argparse.Action):
    """`--version`, looked up only when asked for (importlib.metadata costs `--help` ~30 ms)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print callwatch's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("callwatch")
        except PackageNotFoundError:
            number = "unknown (not installed: run `uv sync`)"
        print(f"callwatch {number}")
        parser.exit()


def parser() -> argparse.ArgumentParser:
    platforms = list(commands.PLATFORM_NAMES)
    root: argparse.ArgumentParser = CommandParser(prog="callwatch", description=__doc__)
    root.add_argument("--version", action=_Version)
    sub = root.add_subparsers(dest="command", required=True)

    def add(
        name: str, handler: Handler, helptext: str, parent: Subcommands = sub
    ) -> argparse.ArgumentParser:
        command = parent.add_parser(name, help=helptext, description=helptext)
        command.set_defaults(handler=handler)
        return command

    up = add("up", cmd_up, "run web, worker, beat, embedded Redis and SQLite in one command")
    up.add_argument("--demo", action="store_true", help="play simulated calls into a demo source")
    up.add_argument(
        "--provider",
        choices=platforms,
        default="generic",
        help="the platform whose webhooks and API the demo simulates",
    )
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument(
        "--verbose",
        action="store_true",
        help="stream the processes' JSON log lines here (default: to up.log in the data "
        "directory, with a live status line here)",
    )
    serve = add("serve", cmd_serve, "run the web process (webhooks and API)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    # uvloop where installed, as shipped; the fault tests also run the receiver on asyncio's loop.
    serve.add_argument(
        "--loop", choices=["auto", "asyncio", "uvloop"], default="auto", help=argparse.SUPPRESS
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="receiver processes on the one port (each with its own database writer); "
        "about one per core",
    )
    worker = add("worker", cmd_worker, "run a Celery worker")
    worker.add_argument(
        "--concurrency", type=int, default=12, help="threads (tasks mostly wait on I/O)"
    )
    worker.add_argument("--hostname", default=f"callwatch-{os.getpid()}@%h")
    add("beat", cmd_beat, "run the scheduler that drives the sweeper")
    add("migrate", cmd_migrate, "upgrade the database schema")

    org = add("org", lambda a, s: 0, "manage orgs")
    source = add("source", lambda a, s: 0, "manage sources")
    org_commands = org.add_subparsers(dest="org_command", required=True)
    provisioning.add_commands(
        add, org_commands, source.add_subparsers(dest="source_command", required=True)
    )
    keys.add_org_commands(add, org_commands)
    key = add("key", lambda a, s: 0, "manage the org's API keys over the HTTP API")
    keys.add_commands(add, key.add_subparsers(dest="key_command", required=True))

    simulate = add(
        "simulate", cmd_simulate, "send simulated calls to a source, as its platform sends them"
    )
    simulate.add_argument("--url", required=True, help="the source's webhook URL")
    simulate.add_argument(
        "--secret",
        help="the source's webhook secret (whsec_… for generic); "
        "not needed for platforms that do not sign",
    )
    simulate.add_argument(
        "--calls-url",
        help="for fixa: the webhook URL of a generic source that receives the analysed calls",
    )
    simulate.add_argument("--calls-secret", help="that generic source's whsec_… secret")
    simulate.add_argument(
        "--provider",
        choices=platforms,
        default="generic",
        help="whose webhooks to play, signed as that platform signs them",
    )
    simulate.add_argument("--calls", type=int, default=10)
    simulate.add_argument("--rate", type=float, default=2.0, help="calls started per second")
    simulate.add_argument("--seed", type=int)

    tail = add("tail", cmd_tail, "follow an ops stream (assembled calls or alerts) live")
    tail.add_argument("stream", choices=["calls", "alerts"])
    tail.add_argument(
        "--from-start", action="store_true", help="print the entries already there first"
    )
    tail.add_argument("--json", action="store_true", help="one JSON object per entry")
    tail.add_argument("--count", type=int, metavar="N", help="stop after N entries")
    tail.add_argument("--redis-url", help="default: $CALLWATCH_REDIS_URL")

    replays.add_commands(add, sub)
    rollups.add_commands(add, sub)
    erasure.add_commands(add, sub)

    calls = add("calls", lambda a, s: 0, "query and export calls over the HTTP API")
    calls_commands = calls.add_subparsers(dest="calls_command", required=True)
    lookups.add_commands(add, calls_commands)
    exports.add_commands(add, calls_commands)
    erasure.add_calls_commands(add, calls_commands)
    quarantined = add("quarantine", lambda a, s: 0, "events that could not be applied")
    lookups.add_quarantine_commands(
        add, quarantined.add_subparsers(dest="quarantine_command", required=True)
    )
    subscriptions.add_commands(add, sub)
    alert_rules.add_commands(add, sub)
    return root


def main(argv: Sequence[str] | None = None, *, http: "Http | None" = None) -> int:
    """`http` stands in for the `calls` commands' HTTP client (tests pass a TestClient)."""
    args = parser().parse_args(argv, namespace=argparse.Namespace(http=http))
    try:
        from callwatch.settings import Settings

        settings = Settings()
        return int(args.handler(args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line for people, saying what to do; tracebacks are not for them
        line = failures.explain(exc)
        if line is None:
            if isinstance(exc, CallwatchError):
                return _fail(str(exc))
            raise
        return _fail(line)


if __name__ == "__main__":
    sys.exit(main())
