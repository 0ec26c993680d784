"""`callwatch stats rebuild`: the stats rollups computed again from the calls."""

import argparse
import sys
from typing import TYPE_CHECKING

from callwatch.cli.commands import Adder, Subcommands
from callwatch.cli.failures import require_database

if TYPE_CHECKING:
    from callwatch.settings import Settings

REBUILD_BATCH = 5_000  # calls per transaction


def add_commands(add: Adder, commands: Subcommands) -> None:
    stats = add("stats", lambda a, s: 0, "the stats rollups GET /api/stats reads", commands)
    stats_commands = stats.add_subparsers(dest="stats_command", required=True)
    rebuild = add(
        "rebuild",
        cmd_rebuild,
        "compute the rollups again from the calls (stop the workers first)",
        stats_commands,
    )
    rebuild.add_argument("--org", help="only this org's (name or id); default: every org's")
    rebuild.add_argument("--batch", type=int, default=REBUILD_BATCH, help="calls per transaction")


def cmd_rebuild(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.calls import rollups
    from callwatch.db import transaction
    from callwatch.orgs import tenancy
    from callwatch.runtime import opened

    require_database(settings)
    with opened(settings) as rt:
        with transaction(rt.sessions) as session:
            org_id = tenancy.get_org(session, args.org).id if args.org else None
            rollups.forget(session, org_id)
        done, after = 0, ""
        while True:
            with transaction(rt.sessions) as session:
                added = rollups.add_batch(session, org_id, after, max(args.batch, 1))
            if not added:
                break
            done, after = done + len(added), added[-1]
            print(f"{done} calls added", file=sys.stderr, flush=True)
    print(f"stats rollups rebuilt from {done} calls")
    return 0
