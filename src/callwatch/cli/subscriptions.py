"""`callwatch subscription list|get|create|update|delete|rotate-secret` over
`/api/subscriptions`: signed webhooks to your endpoints, managed from the terminal."""

import argparse
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from callwatch.cli.lookups import add_connection, as_json, query
from callwatch.cli.provisioning import rate_limit_arg

if TYPE_CHECKING:
    from callwatch.cli.commands import Adder, Subcommands
    from callwatch.settings import Settings

BASE = "/api/subscriptions"
# The API's event types, named here so that parsing imports nothing (tests compare the two).
EVENT_TYPES = (
    "call.status_changed",
    "call.assembled",
    "call.assembly_failed",
    "call.deleted",
    "alert.triggered",
    "alert.resolved",
)
HEADER = ("ID", "URL", "EVENTS", "STATE", "DESCRIPTION")


def _one(subscription_id: str) -> str:
    return f"{BASE}/{quote(subscription_id, safe='')}"


def subscription_table(body: dict[str, Any]) -> list[str]:
    from callwatch.cli.terminal import table

    rows = [
        [
            item["id"],
            item["url"],
            " ".join(item["event_types"]),
            _state(item),
            item.get("description") or "-",
        ]
        for item in body["items"]
    ]
    count = f"{len(rows)} subscription{'' if len(rows) == 1 else 's'}"
    return [*table(HEADER, rows), count] if rows else [count]


def _state(item: dict[str, Any]) -> str:
    if item["enabled"]:
        return "failing" if item.get("failing_since") else "enabled"
    return f"disabled ({item['disabled_reason']})" if item.get("disabled_reason") else "disabled"


def _filters(args: argparse.Namespace) -> dict[str, list[str]]:
    return {
        name: getattr(args, name)
        for name in ("agent_id", "source", "status")
        if getattr(args, name) is not None
    }


def cmd_list(args: argparse.Namespace, settings: "Settings") -> int:
    return query(args, settings, lambda api: api.json("GET", BASE), subscription_table)


def cmd_get(args: argparse.Namespace, settings: "Settings") -> int:
    args.json = True
    return query(args, settings, lambda api: api.json("GET", _one(args.id)), as_json)


def cmd_create(args: argparse.Namespace, settings: "Settings") -> int:
    body: dict[str, Any] = {
        "url": args.target,
        "event_types": args.event or list(EVENT_TYPES),
        "filters": _filters(args),
        "enabled": not args.disabled,
    }
    if args.description is not None:
        body["description"] = args.description
    if args.rate_limit:
        body["rate_limit"] = args.rate_limit
    args.json = True
    code = query(args, settings, lambda api: api.json("POST", BASE, body=body), as_json)
    if code == 0:
        print("Keep the secret (whsec_…): it is shown only once.", file=sys.stderr)
    return code


def cmd_update(args: argparse.Namespace, settings: "Settings") -> int:
    body: dict[str, Any] = {}
    if args.target is not None:
        body["url"] = args.target
    if args.event is not None:
        body["event_types"] = args.event
    if any(getattr(args, name) is not None for name in ("agent_id", "source", "status")):
        body["filters"] = _filters(args)
    if args.description is not None:
        body["description"] = args.description
    if args.enabled is not None:
        body["enabled"] = args.enabled
    if args.rate_limit is not None:
        body["rate_limit"] = args.rate_limit or None  # '' lifts it
    if not body:
        print("error: nothing to change: pass at least one option (see --help)", file=sys.stderr)
        return 2
    args.json = True
    return query(args, settings, lambda api: api.json("PATCH", _one(args.id), body=body), as_json)


def cmd_delete(args: argparse.Namespace, settings: "Settings") -> int:
    args.json = False
    return query(
        args,
        settings,
        lambda api: api.json("DELETE", _one(args.id)),
        lambda _: [f"deleted subscription {args.id}"],
    )


def cmd_rotate_secret(args: argparse.Namespace, settings: "Settings") -> int:
    args.json = True
    code = query(
        args, settings, lambda api: api.json("POST", _one(args.id) + "/rotate-secret"), as_json
    )
    if code == 0:
        print("Keep the new secret: it is shown only once.", file=sys.stderr)
    return code


def add_commands(add: "Adder", commands: "Subcommands") -> None:
    """The `subscription` command and its subcommands."""
    group = add("subscription", lambda a, s: 0, "manage subscriptions (signed webhooks)", commands)
    sub = group.add_subparsers(dest="subscription_command", required=True)
    listed = add("list", cmd_list, "list the org's subscriptions", sub)
    add_connection(listed)
    shown = add("get", cmd_get, "show one subscription as JSON", sub)
    shown.add_argument("id", metavar="ID")
    add_connection(shown, json_flag=False)
    create = add("create", cmd_create, "subscribe an endpoint; prints its secret once", sub)
    create.add_argument(
        "--endpoint", dest="target", required=True, metavar="URL", help="your https endpoint"
    )
    _add_fields(create)
    create.add_argument("--disabled", action="store_true", help="create it switched off")
    add_connection(create, json_flag=False)
    update = add("update", cmd_update, "change a subscription (only what is given)", sub)
    update.add_argument("id", metavar="ID")
    update.add_argument("--endpoint", dest="target", metavar="URL", help="a new endpoint URL")
    _add_fields(update)
    switch = update.add_mutually_exclusive_group()
    switch.add_argument("--enable", dest="enabled", action="store_const", const=True)
    switch.add_argument("--disable", dest="enabled", action="store_const", const=False)
    add_connection(update, json_flag=False)
    delete = add("delete", cmd_delete, "delete a subscription and its delivery log", sub)
    delete.add_argument("id", metavar="ID")
    add_connection(delete, json_flag=False)
    rotate = add(
        "rotate-secret",
        cmd_rotate_secret,
        "a new signing secret; the old one keeps signing during the overlap",
        sub,
    )
    rotate.add_argument("id", metavar="ID")
    add_connection(rotate, json_flag=False)


def _add_fields(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--event",
        action="append",
        choices=EVENT_TYPES,
        help="repeatable (create: default every type)",
    )
    command.add_argument("--agent-id", action="append", help="only these agents; repeatable")
    command.add_argument("--source", action="append", help="only these sources; repeatable")
    command.add_argument("--status", action="append", help="only these call statuses")
    command.add_argument("--description")
    command.add_argument(
        "--rate-limit",
        type=rate_limit_arg,
        metavar="PER_SECOND[/BURST]",
        help="deliveries past it wait (burst: one second's worth unless given); '' lifts it",
    )
