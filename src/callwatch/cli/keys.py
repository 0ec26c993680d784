"""`callwatch key list|create|delete` (org API key) and `callwatch org list` (admin token),
over the HTTP API."""

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from callwatch.cli.lookups import add_connection, add_url, as_json, query
from callwatch.errors import RequestError

if TYPE_CHECKING:
    from callwatch.cli.commands import Adder, Subcommands
    from callwatch.settings import Settings

KEY_HEADER = ("ID", "NAME", "PREFIX", "CREATED (UTC)", "LAST USED (UTC)")
ORG_HEADER = ("ID", "NAME", "CREATED (UTC)", "SOURCES", "KEYS")


def _admin_token(args: argparse.Namespace, settings: "Settings") -> str:
    """--admin-token, else CALLWATCH_ADMIN_TOKEN, else the one `up` generated (never made here)."""
    if args.admin_token:
        return str(args.admin_token)
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    generated = settings.data_dir / "admin_token"
    if generated.exists():
        return generated.read_text().strip()
    raise RequestError(
        "no admin token: pass --admin-token or set CALLWATCH_ADMIN_TOKEN (`callwatch up` prints it)"
    )


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def key_table(reply: dict[str, Any]) -> list[str]:
    from callwatch.cli.terminal import table
    from callwatch.orgs.keys import KeyList

    rows = [
        (key.id, key.name, key.prefix + "…", _time(key.created_at), _time(key.last_used_at))
        for key in KeyList.model_validate(reply).items
    ]
    return table(KEY_HEADER, rows)


def org_table(reply: dict[str, Any]) -> list[str]:
    from callwatch.cli.terminal import table
    from callwatch.orgs.keys import OrgList

    rows = [
        (org.id, org.name, _time(org.created_at), str(org.sources), str(org.keys))
        for org in OrgList.model_validate(reply).items
    ]
    return table(ORG_HEADER, rows, right={3, 4})


def cmd_key_list(args: argparse.Namespace, settings: "Settings") -> int:
    return query(args, settings, lambda api: api.json("GET", "/api/keys"), key_table)


def cmd_key_create(args: argparse.Namespace, settings: "Settings") -> int:
    body = {"name": args.name}
    code = query(args, settings, lambda api: api.json("POST", "/api/keys", (), body), as_json)
    if code == 0:
        print("Keep the API key: it is shown only once.", file=sys.stderr)
    return code


def cmd_key_delete(args: argparse.Namespace, settings: "Settings") -> int:
    path = f"/api/keys/{quote(args.key_id, safe='')}"
    return query(
        args,
        settings,
        lambda api: api.json("DELETE", path),
        lambda _: [f"deleted {args.key_id}; it is refused from now on"],
    )


def cmd_org_list(args: argparse.Namespace, settings: "Settings") -> int:
    token = _admin_token(args, settings)
    return query(
        args, settings, lambda api: api.json("GET", "/api/admin/orgs"), org_table, token=token
    )


def add_commands(add: "Adder", key: "Subcommands") -> None:
    """`list`, `create` and `delete` under the `key` command."""
    listed = add("list", cmd_key_list, "list the org's API keys (never the keys themselves)", key)
    add_connection(listed)
    created = add("create", cmd_key_create, "create an API key and print it (shown once)", key)
    created.add_argument("name", help="what the key is for, e.g. `grafana`")
    add_connection(created, json_flag=False)
    deleted = add(
        "delete",
        cmd_key_delete,
        "delete an API key: refused from then on (an org keeps at least one)",
        key,
    )
    deleted.add_argument("key_id", metavar="ID", help="the key's id (`callwatch key list`)")
    add_connection(deleted, json_flag=False)


def add_org_commands(add: "Adder", org: "Subcommands") -> None:
    """`list` under the `org` command."""
    listed = add("list", cmd_org_list, "list orgs with how many sources and keys each has", org)
    add_url(listed)
    listed.add_argument(
        "--admin-token",
        help="default: $CALLWATCH_ADMIN_TOKEN, else the one `callwatch up` generated",
    )
    listed.add_argument("--json", action="store_true", help="print the API's JSON")
