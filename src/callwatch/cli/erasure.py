"""`callwatch calls delete`, `callwatch erasure create|list` (over the HTTP API, org API key) and
`callwatch purge` (the retention purge, run now against the database)."""

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from callwatch.cli.failures import require_database
from callwatch.cli.lookups import add_connection, query

if TYPE_CHECKING:
    from callwatch.cli.commands import Adder, Subcommands
    from callwatch.settings import Settings

ERASURE_HEADER = ("ID", "WHEN (UTC)", "CALLS", "KEY")


def cmd_calls_delete(args: argparse.Namespace, settings: "Settings") -> int:
    path = f"/api/calls/{quote(args.call_id, safe='')}"
    return query(
        args,
        settings,
        lambda api: api.json("DELETE", path),
        lambda _: [f"deleted {args.call_id} with its events, deliveries and recording"],
    )


def cmd_erasure_create(args: argparse.Namespace, settings: "Settings") -> int:
    body = {"phone_number": args.phone_number}
    return query(
        args,
        settings,
        lambda api: api.json("POST", "/api/erasures", (), body),
        lambda reply: [f"erased {reply['calls']} calls ({reply['id']})"],
    )


def erasure_table(reply: dict[str, Any]) -> list[str]:
    from callwatch.cli.terminal import table
    from callwatch.retention.erasures import ErasureList

    rows = [
        (
            erasure.id,
            erasure.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            str(erasure.calls),
            erasure.key_id or "-",
        )
        for erasure in ErasureList.model_validate(reply).items
    ]
    return table(ERASURE_HEADER, rows, right={2})


def cmd_erasure_list(args: argparse.Namespace, settings: "Settings") -> int:
    return query(args, settings, lambda api: api.json("GET", "/api/erasures"), erasure_table)


def cmd_purge(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.retention import purge
    from callwatch.runtime import opened

    require_database(settings)
    began = datetime.now(UTC)

    def progress(batch: purge.Purged) -> None:
        nonzero = ", ".join(f"{value} {name}" for name, value in batch.counts().items() if value)
        print(f"purged {nonzero}", file=sys.stderr, flush=True)

    with opened(settings.model_copy(update={"purge_budget_s": 10.0**9})) as runtime:
        total = purge.run(runtime, on_batch=progress)
    seconds = (datetime.now(UTC) - began).total_seconds()
    counts = total.counts()
    print(", ".join(f"{value} {name}" for name, value in counts.items()) + f" in {seconds:.1f} s")
    return 0


def add_calls_commands(add: "Adder", calls: "Subcommands") -> None:
    deleted = add(
        "delete",
        cmd_calls_delete,
        "delete a call with everything of it (subscribers of call.deleted are told)",
        calls,
    )
    deleted.add_argument("call_id", metavar="ID", help="callwatch id or provider call id")
    add_connection(deleted, json_flag=False)


def add_commands(add: "Adder", commands: "Subcommands") -> None:
    erasure = add("erasure", lambda a, s: 0, "erase every call of a phone number", commands)
    erasure_commands = erasure.add_subparsers(dest="erasure_command", required=True)
    created = add(
        "create", cmd_erasure_create, "erase every call from, to or with a number", erasure_commands
    )
    created.add_argument("phone_number", metavar="NUMBER", help="E.164: +14155550100")
    add_connection(created, json_flag=False)
    listed = add("list", cmd_erasure_list, "erasures done (never the numbers)", erasure_commands)
    add_connection(listed)
    add(
        "purge",
        cmd_purge,
        "delete now what passed each org's retention (the workers' beat does it every "
        "CALLWATCH_PURGE_INTERVAL_S)",
        commands,
    )
