"""`callwatch key list|create|delete` (org API key) and `callwatch org list` (admin token),
over the HTTP API."""

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from callwatch.errors import RequestError

if TYPE_CHECKING:
    from callwatch.cli.commands import Adder, Subcommands
    from callwatch.settings import Settings

KEY_HEADER = ("ID", "NAME", "PREFIX", "CREATED (UTC)", "LAST USED (UTC)")
ORG_HEADER = ("ID", "NAME", "CREATED (UTC)", "SOURCES", "KEYS")


def _org_key(args: argparse.Namespace) -> str:
    key: str | None = args.api_key or os.environ.get("CALLWATCH_API_KEY")
    if not key:
        raise RequestError(
            "no API key: pass --api-key or set CALLWATCH_API_KEY "
            "(`callwatch org create` prints one)"
        )
    return key


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


def _call(
    args: argparse.Namespace,
    settings: "Settings",
    token: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> Any:
    """The API's JSON reply ({} for 204); ApiError, in one line, if it failed."""
    from callwatch.cli.terminal import Api

    base = args.url or os.environ.get("CALLWATCH_URL") or settings.public_url
    return Api(base, token, args.http).json(method, path, (), body)


def _run(args: argparse.Namespace, settings: "Settings", token: str, *request: Any) -> int:
    """Send the request and print its reply (`args.render`, or the JSON with --json)."""
    from callwatch.cli.terminal import ApiError

    try:
        reply = _call(args, settings, token, *request)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if getattr(args, "json", False) or args.render is None:
        print(json.dumps(reply, indent=2))
    else:
        print("\n".join(args.render(reply)))
    return 0


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
    args.render = key_table
    return _run(args, settings, _org_key(args), "GET", "/api/keys")


def cmd_key_create(args: argparse.Namespace, settings: "Settings") -> int:
    args.render = None
    code = _run(args, settings, _org_key(args), "POST", "/api/keys", {"name": args.name})
    if code == 0:
        print("Keep the API key: it is shown only once.", file=sys.stderr)
    return code


def cmd_key_delete(args: argparse.Namespace, settings: "Settings") -> int:
    args.render = lambda _: [f"deleted {args.key_id}; it is refused from now on"]
    path = f"/api/keys/{quote(args.key_id, safe='')}"
    return _run(args, settings, _org_key(args), "DELETE", path)


def cmd_org_list(args: argparse.Namespace, settings: "Settings") -> int:
    args.render = org_table
    return _run(args, settings, _admin_token(args, settings), "GET", "/api/admin/orgs")


def add_commands(add: "Adder", key: "Subcommands") -> None:
    """`list`, `create` and `delete` under the `key` command."""
    listed = add("list", cmd_key_list, "list the org's API keys (never the keys themselves)", key)
    _add_connection(listed, json_output=True)
    created = add("create", cmd_key_create, "create an API key and print it (shown once)", key)
    created.add_argument("name", help="what the key is for, e.g. `grafana`")
    _add_connection(created)
    deleted = add(
        "delete",
        cmd_key_delete,
        "delete an API key: refused from then on (an org keeps at least one)",
        key,
    )
    deleted.add_argument("key_id", metavar="ID", help="the key's id (`callwatch key list`)")
    _add_connection(deleted)


def add_org_commands(add: "Adder", org: "Subcommands") -> None:
    """`list` under the `org` command."""
    listed = add("list", cmd_org_list, "list orgs with how many sources and keys each has", org)
    _add_url(listed)
    listed.add_argument(
        "--admin-token",
        help="default: $CALLWATCH_ADMIN_TOKEN, else the one `callwatch up` generated",
    )
    listed.add_argument("--json", action="store_true", help="print the API's JSON")


def _add_url(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--url",
        help="API base URL (default: $CALLWATCH_URL, else $CALLWATCH_PUBLIC_URL, "
        "else http://127.0.0.1:8000)",
    )


def _add_connection(command: argparse.ArgumentParser, *, json_output: bool = False) -> None:
    _add_url(command)
    command.add_argument("--api-key", help="the org's API key (default: $CALLWATCH_API_KEY)")
    if json_output:
        command.add_argument("--json", action="store_true", help="print the API's JSON")
