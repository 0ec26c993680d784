"""`callwatch calls list|get|stats` and `callwatch quarantine list`: looked up over the HTTP API."""

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from callwatch.errors import RequestError

if TYPE_CHECKING:
    from callwatch.cli.commands import Adder, Subcommands
    from callwatch.cli.terminal import Api, Params
    from callwatch.settings import Settings


def filter_names() -> tuple[str, ...]:
    """The query API's call filters; each has a --flag of the same name."""
    from callwatch.query.filters import CallFilters

    return tuple(CallFilters.model_fields)


def params_of(args: argparse.Namespace, names: Sequence[str]) -> "Params":
    params = []
    for name in names:
        value = getattr(args, name)
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                params.append((name, str(item)))
    return tuple(params)


def connect(args: argparse.Namespace, settings: "Settings", token: str | None = None) -> "Api":
    """The API a command talks to, from its --url and --api-key (or the environment); `token`
    instead of the org's key (the admin token)."""
    from callwatch.cli.terminal import Api

    key = token or args.api_key or os.environ.get("CALLWATCH_API_KEY")
    if not key:
        raise RequestError(
            "no API key: pass --api-key or set CALLWATCH_API_KEY "
            "(`callwatch org create` prints one)"
        )
    url = args.url or os.environ.get("CALLWATCH_URL") or settings.public_url
    return Api(url, key, args.http)


def as_json(body: Any) -> list[str]:
    """A reply shown as it came, for commands whose reply is the point (a secret shown once)."""
    return [json.dumps(body, indent=2)]


def query(
    args: argparse.Namespace,
    settings: "Settings",
    fetch: "Callable[[Api], Any]",
    render: Callable[[Any], list[str]],
    *,
    token: str | None = None,
) -> int:
    """One request; its answer as JSON with --json, else as `render` lays it out; an API error
    is one line and exit status 1."""
    from callwatch.cli.terminal import ApiError

    api = connect(args, settings, token)
    try:
        body = fetch(api)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    as_json = getattr(args, "json", False)  # commands whose reply is JSON anyway have no --json
    print(json.dumps(body, indent=2) if as_json else "\n".join(render(body)))
    return 0


def cmd_calls_list(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.cli.terminal import call_table

    params = params_of(args, (*filter_names(), "limit", "skip", "page"))
    return query(args, settings, lambda api: api.calls(params), call_table)


def cmd_calls_get(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.cli.terminal import call_view

    return query(args, settings, lambda api: api.call(args.call_id), call_view)


def cmd_calls_stats(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.cli.terminal import stats_table

    params = params_of(args, (*filter_names(), "group_by"))
    return query(args, settings, lambda api: api.stats(params), stats_table)


def cmd_quarantine_list(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.cli.terminal import quarantine_table

    params = params_of(args, ("source", "limit", "skip", "page"))
    return query(args, settings, lambda api: api.quarantine(params), quarantine_table)


def add_quarantine_commands(add: "Adder", quarantine: "Subcommands") -> None:
    """`list` under the `quarantine` command."""
    listed = add(
        "list",
        cmd_quarantine_list,
        "list the org's events that could not be applied, the latest first, with the reason "
        "(`callwatch replay --quarantined` sends them to the workers again)",
        quarantine,
    )
    listed.add_argument("--source", help="source name")
    listed.add_argument("--limit", type=int, help="events per page (API default 100)")
    paging = listed.add_mutually_exclusive_group()
    paging.add_argument("--skip", type=int)
    paging.add_argument("--page", type=int, help="1-based page of --limit events")
    add_connection(listed)


def add_commands(add: "Adder", calls: "Subcommands") -> None:
    """`list`, `get` and `stats` under the `calls` command."""
    calls_list = add("list", cmd_calls_list, "list calls, newest first", calls)
    add_filters(calls_list)
    calls_list.add_argument("--limit", type=int, help="calls per page (API default 100)")
    paging = calls_list.add_mutually_exclusive_group()
    paging.add_argument("--skip", type=int)
    paging.add_argument("--page", type=int, help="1-based page of --limit calls")
    add_connection(calls_list)
    calls_get = add("get", cmd_calls_get, "show one call", calls)
    calls_get.add_argument("call_id", metavar="ID", help="callwatch id or provider call id")
    add_connection(calls_get)
    calls_stats = add("stats", cmd_calls_stats, "aggregate calls, overall and grouped", calls)
    add_filters(calls_stats)
    calls_stats.add_argument("--group-by", choices=["agent", "day", "source"])
    add_connection(calls_stats)


def add_filters(command: argparse.ArgumentParser) -> None:
    command.add_argument("--status", action="append", help="repeatable")
    command.add_argument("--agent-id")
    command.add_argument("--campaign-id")
    command.add_argument("--source", help="source name")
    command.add_argument("--direction", choices=["inbound", "outbound"])
    command.add_argument("--channel")
    command.add_argument("--customer-phone", help="part of the customer's number")
    command.add_argument("--search", help="call id, provider call id, or part of a number")
    command.add_argument("--date-from", help="started at or after (ISO 8601, UTC if no zone)")
    command.add_argument("--date-to", help="started at or before; a date includes that day")
    command.add_argument("--min-duration", type=float, metavar="SECONDS")
    command.add_argument("--max-duration", type=float, metavar="SECONDS")
    command.add_argument("--end-reason", action="append", help="repeatable")
    recording = command.add_mutually_exclusive_group()
    recording.add_argument(
        "--has-recording",
        dest="has_recording",
        action="store_const",
        const="true",
        help="only calls with a recording",
    )
    recording.add_argument(
        "--no-recording",
        dest="has_recording",
        action="store_const",
        const="false",
        help="only calls without one",
    )


def add_url(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--url",
        help="API base URL (default: $CALLWATCH_URL, else $CALLWATCH_PUBLIC_URL, "
        "else http://127.0.0.1:8000)",
    )


def add_connection(command: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    add_url(command)
    command.add_argument("--api-key", help="the org's API key (default: $CALLWATCH_API_KEY)")
    if json_flag:
        command.add_argument("--json", action="store_true", help="print the API's JSON")
