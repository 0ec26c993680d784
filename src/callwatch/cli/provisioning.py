"""`callwatch org create` and `source add|list`: orgs and sources set up from the terminal."""

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from callwatch.cli.failures import require_database
from callwatch.errors import RequestError

if TYPE_CHECKING:
    from callwatch.cli.commands import Adder, Subcommands
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
        view["signing_secret"] = secret
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


def add_commands(add: "Adder", org: "Subcommands", source: "Subcommands") -> None:
    """`create` under the `org` command; `add` and `list` under the `source` command."""
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
