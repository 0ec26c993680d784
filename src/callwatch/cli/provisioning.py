"""`callwatch org create` and `source add|list|get|edit|delete|rotate-token|rotate-secret`.

`org create`, `source add` and `source list` work on the database (they set up what the API
needs: an org and its key); the others go over the HTTP API with the org's API key.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from callwatch.cli.failures import require_database
from callwatch.cli.lookups import add_connection, query
from callwatch.errors import RequestError

if TYPE_CHECKING:
    from callwatch.cli.commands import Adder, Subcommands
    from callwatch.cli.terminal import Api
    from callwatch.settings import Settings


def cmd_org_create(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.db import transaction
    from callwatch.orgs import tenancy
    from callwatch.runtime import opened, utcnow

    with opened(settings) as rt, transaction(rt.sessions) as session:
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


def cmd_source_add(args: argparse.Namespace, settings: "Settings") -> int:
    from pydantic import ValidationError

    from callwatch.db import transaction
    from callwatch.orgs import tenancy
    from callwatch.orgs.endpoints import source_view
    from callwatch.outbound import ssrf
    from callwatch.runtime import opened, utcnow
    from callwatch.validation import invalid

    try:
        source_settings = tenancy.SourceSettings(
            detail_url=args.detail_url,
            api_base_url=args.api_base_url,
            allowed_ips=args.allowed_ip or [],
        )
    except ValidationError as exc:  # one line, as for the API's 422
        raise invalid(exc, "settings.") from None
    data = tenancy.SourceIn(
        name=args.name,
        provider=args.provider,
        settings=source_settings,
        credentials=_credentials(args.credential or []),
    )
    with opened(settings) as rt, transaction(rt.sessions) as session:
        org = tenancy.get_org(session, args.org)
        guard = ssrf.Guard(settings.allow_private_targets)
        source, secret = tenancy.create_source(
            session, rt.vault, org.id, data, utcnow(), guard=guard
        )
        view = source_view(source, settings.public_url)
    if secret is not None:
        view["webhook_secret"] = secret
    print(json.dumps(view, indent=2))
    return 0


def cmd_source_list(args: argparse.Namespace, settings: "Settings") -> int:
    from callwatch.db import transaction
    from callwatch.orgs import tenancy
    from callwatch.orgs.endpoints import source_view
    from callwatch.runtime import opened

    require_database(settings)
    with opened(settings) as rt, transaction(rt.sessions) as session:
        org = tenancy.get_org(session, args.org)
        for source in tenancy.list_sources(session, org.id):
            view = source_view(source, settings.public_url)
            print(f"{view['id']}  {view['name']:<20} {view['provider']:<10} {view['webhook_url']}")
    return 0


def _source_lines(view: dict[str, Any]) -> list[str]:
    settings = dict(view.get("settings") or {})
    lines = [
        f"{view['id']}  {view['name']}  ({view['provider']}, "
        + ("enabled)" if view.get("enabled", True) else "disabled: its webhooks answer 410)"),
        f"webhook URL: {view['webhook_url']}",
    ]
    if until := view.get("previous_token_expires_at"):
        lines.append(f"the previous webhook URL works until {until}")
    if limit := settings.pop("rate_limit", None):
        lines.append(f"rate limit: {limit['per_second']:g}/s, burst {limit['burst']}")
    lines += [f"{name}: {value}" for name, value in settings.items() if value not in (None, [])]
    if until := view.get("previous_secret_expires_at"):
        lines.append(f"the previous webhook secret verifies until {until}")
    if secret := view.get("webhook_secret"):
        lines.append(f"webhook secret (shown once): {secret}")
    return lines


def cmd_source_get(args: argparse.Namespace, settings: "Settings") -> int:
    return query(args, settings, lambda api: api.source("GET", args.source_id), _source_lines)


def _patch(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.name is not None:
        changes["name"] = args.name
    if args.enabled is not None:
        changes["enabled"] = args.enabled
    source_settings: dict[str, Any] = {
        "detail_url": args.detail_url,
        "api_base_url": args.api_base_url,
        "rate_limit": args.rate_limit,
    }
    source_settings = {k: v or None for k, v in source_settings.items() if v is not None}
    if source_settings:
        changes["settings"] = source_settings
    if args.allowed_ip is not None:
        changes["allowed_ips"] = [ip for ip in args.allowed_ip if ip]
    if args.credential:
        changes["credentials"] = _credentials(args.credential)
    if not changes:
        raise RequestError("nothing to change: pass at least one option (see --help)")
    return changes


def rate_limit_arg(text: str) -> dict[str, float | int] | str:
    if not text:
        return ""  # lifts the limit
    rate, _, burst = text.partition("/")
    try:
        return {"per_second": float(rate)} | ({"burst": int(burst)} if burst else {})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give requests per second, and optionally /burst (e.g. 50/100)"
        ) from None


def cmd_source_edit(args: argparse.Namespace, settings: "Settings") -> int:
    changes = _patch(args)
    return query(
        args, settings, lambda api: api.source("PATCH", args.source_id, body=changes), _source_lines
    )


def cmd_source_delete(args: argparse.Namespace, settings: "Settings") -> int:
    return query(
        args,
        settings,
        lambda api: api.source("DELETE", args.source_id),
        lambda _: [f"deleted {args.source_id}: its webhooks answer 404; its calls stay"],
    )


def _rotation(args: argparse.Namespace) -> dict[str, float] | None:
    return None if args.overlap is None else {"overlap_s": args.overlap}


def cmd_source_rotate_token(args: argparse.Namespace, settings: "Settings") -> int:
    def rotate(api: "Api") -> Any:
        return api.source("POST", args.source_id, "rotate-token", _rotation(args))

    return query(args, settings, rotate, _source_lines)


def cmd_source_rotate_secret(args: argparse.Namespace, settings: "Settings") -> int:
    def rotate(api: "Api") -> Any:
        return api.source("POST", args.source_id, "rotate-secret", _rotation(args))

    def lines(reply: dict[str, Any]) -> list[str]:
        until = reply.get("previous_secret_expires_at")
        previous = f"until {until}" if until else "no longer"
        return [
            f"new webhook secret (shown once): {reply['webhook_secret']}",
            f"the previous secret verifies {previous}",
        ]

    return query(args, settings, rotate, lines)


def _add_source_commands(add: "Adder", source: "Subcommands") -> None:
    get = add("get", cmd_source_get, "show a source (over the HTTP API)", source)
    edit = add("edit", cmd_source_edit, "change a source (over the HTTP API)", source)
    edit.add_argument("--name")
    enabled = edit.add_mutually_exclusive_group()
    enabled.add_argument("--enable", dest="enabled", action="store_const", const=True)
    enabled.add_argument(
        "--disable",
        dest="enabled",
        action="store_const",
        const=False,
        help="its webhooks answer 410 until it is enabled again",
    )
    edit.add_argument("--detail-url", help="detail API template with {call_id}; '' clears it")
    edit.add_argument("--api-base-url", help="'' clears it")
    edit.add_argument(
        "--allowed-ip", action="append", help="replaces the list (repeatable); '' empties it"
    )
    edit.add_argument(
        "--credential",
        action="append",
        metavar="KEY=VALUE",
        help="merged into the stored credentials (repeatable)",
    )
    edit.add_argument(
        "--rate-limit",
        type=rate_limit_arg,
        metavar="PER_SECOND[/BURST]",
        help="webhooks past it get 429 (burst: one second's worth unless given); '' lifts it",
    )
    delete = add("delete", cmd_source_delete, "delete a source; its calls stay", source)
    rotate_token = add(
        "rotate-token",
        cmd_source_rotate_token,
        "a new webhook URL; the old one keeps working for --overlap",
        source,
    )
    rotate_secret = add(
        "rotate-secret",
        cmd_source_rotate_secret,
        "a new webhook secret (generic sources); the old one verifies for --overlap",
        source,
    )
    for command in (get, edit, delete, rotate_token, rotate_secret):
        command.add_argument("source_id", metavar="ID", help="the source's id (src_…)")
        add_connection(command)
    for command in (rotate_token, rotate_secret):
        command.add_argument(
            "--overlap",
            type=float,
            metavar="SECONDS",
            help="how long the old one keeps working (default 86400; 0: it stops at once)",
        )


def add_commands(add: "Adder", org: "Subcommands", source: "Subcommands") -> None:
    """`create` under the `org` command; the `source` command's subcommands."""
    create = add("create", cmd_org_create, "create an org and print its API key", org)
    create.add_argument("name")
    source_add = add("add", cmd_source_add, "add a source and print its webhook URL", source)
    source_add.add_argument("--org", required=True, help="org name or id")
    source_add.add_argument("--name", required=True)
    source_add.add_argument("--provider", default="generic")
    source_add.add_argument("--detail-url", help="detail API template with {call_id}")
    source_add.add_argument("--api-base-url")
    source_add.add_argument("--allowed-ip", action="append")
    source_add.add_argument("--credential", action="append", metavar="KEY=VALUE")
    source_list = add("list", cmd_source_list, "list an org's sources", source)
    source_list.add_argument("--org", required=True, help="org name or id")
    _add_source_commands(add, source)
