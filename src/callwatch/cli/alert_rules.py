"""`callwatch alert-rule list|create|delete` over `/api/alert-rules`."""

import argparse
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from callwatch.cli.lookups import add_connection, query

if TYPE_CHECKING:
    from callwatch.cli.commands import Adder, Subcommands
    from callwatch.settings import Settings

BASE = "/api/alert-rules"
# The API's window metrics, named here so that parsing imports nothing (tests compare the two).
METRICS = (
    "failure_rate",
    "answer_rate",
    "latency_mean_ms",
    "latency_p95_ms",
    "cost_per_call",
    "call_count",
)
HEADER = ("ID", "NAME", "KIND", "CONDITION", "AGENT", "SOURCE", "ENABLED")


def rule_table(body: dict[str, Any]) -> list[str]:
    from callwatch.cli.terminal import table

    rows = [
        [
            item["id"],
            item["name"],
            item["kind"],
            item["condition"],
            item.get("agent_id") or "-",
            item.get("source") or "-",
            "yes" if item["enabled"] else "no",
        ]
        for item in body["items"]
    ]
    count = f"{len(rows)} alert rule{'' if len(rows) == 1 else 's'}"
    return [*table(HEADER, rows), count] if rows else [count]


def cmd_list(args: argparse.Namespace, settings: "Settings") -> int:
    return query(args, settings, lambda api: api.json("GET", BASE), rule_table)


def cmd_create(args: argparse.Namespace, settings: "Settings") -> int:
    body: dict[str, Any] = {"name": args.name, "enabled": not args.disabled}
    if args.expression is not None:
        body |= {"kind": "call", "expression": args.expression}
    else:
        window = {"metric": args.metric, "minutes": args.minutes, "op": args.op}
        window["threshold"] = args.threshold
        if args.min_calls is not None:
            window["min_calls"] = args.min_calls
        body |= {"kind": "window", "window": window}
    for name in ("agent_id", "source"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    args.json = True
    return query(
        args, settings, lambda api: api.json("POST", BASE, body=body), lambda b: [json.dumps(b)]
    )


def cmd_delete(args: argparse.Namespace, settings: "Settings") -> int:
    args.json = False
    return query(
        args,
        settings,
        lambda api: api.json("DELETE", f"{BASE}/{quote(args.id, safe='')}"),
        lambda _: [f"deleted alert rule {args.id} and its alerts"],
    )


def add_commands(add: "Adder", commands: "Subcommands") -> None:
    """The `alert-rule` command and its subcommands."""
    group = add("alert-rule", lambda a, s: 0, "manage alert rules", commands)
    sub = group.add_subparsers(dest="alert_rule_command", required=True)
    listed = add("list", cmd_list, "list the org's alert rules with their conditions", sub)
    add_connection(listed)
    create = add(
        "create",
        cmd_create,
        "a call rule (--expression, tested on each assembled call) or a window rule "
        "(--metric --minutes --op --threshold, on a schedule)",
        sub,
    )
    create.add_argument("--name", required=True)
    kind = create.add_mutually_exclusive_group(required=True)
    kind.add_argument(
        "--expression", help="call rule, e.g. 'latency.turn.p95 > 1500 and status in [completed]'"
    )
    kind.add_argument("--metric", choices=METRICS, help="window rule: what to measure")
    create.add_argument("--minutes", type=int, help="window rule: the last N minutes")
    create.add_argument("--op", choices=[">", ">=", "<", "<="], help="window rule")
    create.add_argument("--threshold", type=float, help="window rule; rates are fractions")
    create.add_argument("--min-calls", type=int, help="window rule: calls needed to judge")
    create.add_argument("--agent-id", help="only this agent")
    create.add_argument("--source", help="only this source (name or id)")
    create.add_argument("--disabled", action="store_true", help="create it switched off")
    add_connection(create, json_flag=False)
    delete = add("delete", cmd_delete, "delete an alert rule and its alerts", sub)
    delete.add_argument("id", metavar="ID")
    add_connection(delete, json_flag=False)
