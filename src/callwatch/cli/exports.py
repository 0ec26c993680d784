"""`callwatch calls export`: every call the filters match, streamed from `/api/calls/export`."""

import argparse
import sys
from typing import TYPE_CHECKING

from callwatch.cli.lookups import add_connection, add_filters, connect, filter_names, params_of

if TYPE_CHECKING:
    from callwatch.cli.commands import Adder, Subcommands
    from callwatch.settings import Settings


def cmd_export(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.cli.terminal import ApiError

    api = connect(args, settings)
    params = (*params_of(args, filter_names()), ("format", args.format))
    try:
        if args.output:
            with open(args.output, "wb") as out:
                written = api.download("/api/calls/export", params, out)
        else:
            written = api.download("/api/calls/export", params, sys.stdout.buffer)
            sys.stdout.flush()
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.output:
        print(f"{written} bytes written to {args.output}", file=sys.stderr)
    return 0


def add_commands(add: "Adder", calls: "Subcommands") -> None:
    """`export` under the `calls` command."""
    export = add(
        "export",
        cmd_export,
        "write every call the filters match, newest first, as CSV or NDJSON (full records), "
        "streamed: `callwatch calls export --format csv > calls.csv`",
        calls,
    )
    export.add_argument("--format", choices=["csv", "ndjson"], default="ndjson")
    export.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    add_filters(export)
    add_connection(export, json_flag=False)
