"""The `callwatch` command line."""

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from callwatch import lookups, tenancy
from callwatch.errors import CallwatchError, RequestError
from callwatch.settings import Settings

if TYPE_CHECKING:
    from callwatch.terminal import Http


def _fail(message: str) -> int:
    print(f"callwatch: {message}", file=sys.stderr)
    return 2


def _runtime(settings: Settings):  # type: ignore[no-untyped-def]
    from callwatch.runtime import Runtime

    return Runtime.start(settings)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from callwatch.app import create_app

    uvicorn.run(
        create_app(settings), host=args.host, port=args.port, log_level="warning", access_log=False
    )
    return 0


def _celery(argv: list[str]) -> int:
    from workers.app import app

    app.start(argv)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
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


def cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    schedule = settings.data_dir / "beat-schedule"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return _celery(["beat", "--loglevel", "WARNING", "--schedule", str(schedule)])


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from callwatch.migrate import upgrade

    if settings.database_url.startswith("sqlite:///./"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    print("database is at the latest schema")
    return 0


def cmd_org_create(args: argparse.Namespace, settings: Settings) -> int:
    from callwatch.db import transaction
    from callwatch.runtime import utcnow

    rt = _runtime(settings)
    with transaction(rt.sessions) as session:
        org, key = tenancy.create_org(session, tenancy.OrgIn(name=args.name), utcnow())
    print(json.dumps({"id": org.id, "name": org.name, "api_key": key}, indent=2))
    print("Keep the API key: it is shown only once.", file=sys.stderr)
    return 0


def _credentials(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise RequestError(f"--credential takes KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def cmd_source_add(args: argparse.Namespace, settings: Settings) -> int:
    from callwatch.admin import source_view
    from callwatch.db import transaction
    from callwatch.runtime import utcnow

    rt = _runtime(settings)
    data = tenancy.SourceIn(
        name=args.name,
        provider=args.provider,
        settings=tenancy.SourceSettings(
            detail_url=args.detail_url,
            api_base_url=args.api_base_url,
            allowed_ips=args.allowed_ip or [],
        ),
        credentials=_credentials(args.credential or []),
    )
    with transaction(rt.sessions) as session:
        org = tenancy.get_org(session, args.org)
        source, secret = tenancy.create_source(session, rt.vault, org.id, data, utcnow())
        view = source_view(source, settings.public_url)
    if secret is not None:
        view["signing_secret"] = secret
    print(json.dumps(view, indent=2))
    return 0


def cmd_source_list(args: argparse.Namespace, settings: Settings) -> int:
    from callwatch.admin import source_view
    from callwatch.db import transaction

    rt = _runtime(settings)
    with transaction(rt.sessions) as session:
        org = tenancy.get_org(session, args.org)
        for source in tenancy.list_sources(session, org.id):
            view = source_view(source, settings.public_url)
            print(f"{view['id']}  {view['name']:<20} {view['provider']:<10} {view['webhook_url']}")
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from callwatch.simulator import PLATFORMS, Progress, run_simulation

    secret_name = PLATFORMS[args.provider].secret_name
    if secret_name and not args.secret:
        return _fail(
            f"{args.provider} webhooks are signed: pass --secret with the source's signing "
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


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from callwatch import tail

    url = args.redis_url or settings.redis_url
    if not url:
        return _fail(
            "no Redis URL: pass --redis-url or set CALLWATCH_REDIS_URL "
            "(the Redis that callwatch's workers use)"
        )
    return tail.run(
        url, args.stream, from_start=args.from_start, as_json=args.json, count=args.count
    )


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from callwatch.up import run_up

    demo = args.provider if args.demo else None
    return run_up(settings, demo=demo, host=args.host, port=args.port)


def parser() -> argparse.ArgumentParser:
    from callwatch.simulator.platforms import PLATFORMS

    platforms = sorted(PLATFORMS)
    root = argparse.ArgumentParser(prog="callwatch", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    def add(
        name: str,
        handler: Callable[[argparse.Namespace, Settings], int],
        helptext: str,
        parent: "argparse._SubParsersAction[argparse.ArgumentParser]" = sub,
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
    serve = add("serve", cmd_serve, "run the web process (webhooks and API)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    worker = add("worker", cmd_worker, "run a Celery worker")
    worker.add_argument(
        "--concurrency", type=int, default=12, help="threads (tasks mostly wait on I/O)"
    )
    worker.add_argument("--hostname", default=f"callwatch-{os.getpid()}@%h")
    add("beat", cmd_beat, "run the scheduler that drives the sweeper")
    add("migrate", cmd_migrate, "upgrade the database schema")

    org = add("org", lambda a, s: 0, "manage orgs")
    org_sub = org.add_subparsers(dest="org_command", required=True)
    create = add("create", cmd_org_create, "create an org and print its API key", org_sub)
    create.add_argument("name")

    source = add("source", lambda a, s: 0, "manage sources")
    source_sub = source.add_subparsers(dest="source_command", required=True)
    source_add = add("add", cmd_source_add, "add a source and print its webhook URL", source_sub)
    source_add.add_argument("--org", required=True, help="org name or id")
    source_add.add_argument("--name", required=True)
    source_add.add_argument("--provider", default="generic")
    source_add.add_argument("--detail-url", help="detail API template with {call_id}")
    source_add.add_argument("--api-base-url")
    source_add.add_argument("--allowed-ip", action="append")
    source_add.add_argument("--credential", action="append", metavar="KEY=VALUE")
    source_list = add("list", cmd_source_list, "list an org's sources", source_sub)
    source_list.add_argument("--org", required=True, help="org name or id")

    simulate = add(
        "simulate", cmd_simulate, "send simulated calls to a source, as its platform sends them"
    )
    simulate.add_argument("--url", required=True, help="the source's webhook URL")
    simulate.add_argument(
        "--secret",
        help="the source's signing secret (whsec_… for generic); "
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

    calls = add("calls", lambda a, s: 0, "query calls over the HTTP API")
    lookups.add_commands(add, calls.add_subparsers(dest="calls_command", required=True))
    return root


def main(argv: Sequence[str] | None = None, *, http: "Http | None" = None) -> int:
    """`http` stands in for the `calls` commands' HTTP client (tests pass a TestClient)."""
    args = parser().parse_args(argv, namespace=argparse.Namespace(http=http))
    try:
        settings = Settings()
        return int(args.handler(args, settings))
    except KeyboardInterrupt:
        return 130
    except CallwatchError as exc:
        return _fail(str(exc))
    except Exception as exc:  # one line for people; the traceback is not for them
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):
            return _fail(
                f"cannot reach the database ({exc.orig}); check CALLWATCH_DATABASE_URL "
                "and run `callwatch migrate`"
            )
        raise


if __name__ == "__main__":
    sys.exit(main())
