"""The demo of `callwatch up --demo`: its org and source, simulated traffic, and progress."""

import os
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from callwatch import providers, runtime
from callwatch.db import transaction
from callwatch.errors import Conflict, StoreUnavailable
from callwatch.ids import new_token
from callwatch.orgs import keys, tenancy
from callwatch.outbound import ssrf
from callwatch.runtime import Runtime, utcnow
from callwatch.settings import Settings
from callwatch.simulator import PLATFORMS, DetailServer, Progress, run_simulation
from callwatch.tables import Call, Org, Source

SIMULATION_STOP_TIMEOUT_S = 15.0
DEMO_ORG = "demo"
DEMO_SOURCE = "demo"
DEMO_RATE = 1.0
DEMO_KEY_FILE = "demo_api_key"  # under the data directory
DEMO_KEY_NAME = "demo"


@dataclass(frozen=True)
class DemoSource:
    org_id: str
    api_key: str
    webhook_url: str
    secret: str
    server: DetailServer
    provider: str
    # Where the analysed calls go, for a platform that analyses another's (fixa).
    calls_url: str | None = None
    calls_secret: str = ""


def setup_demo(stack: ExitStack, settings: Settings, provider: str) -> DemoSource:
    """The demo org (with the last run's API key while it is valid) and its source, pointed at
    a fresh detail server."""
    server = stack.enter_context(DetailServer())
    analysed = PLATFORMS[provider].analyses
    with runtime.opened(settings) as resources, transaction(resources.sessions) as session:
        org, api_key = _demo_org(session, settings.data_dir / DEMO_KEY_FILE)

        def target(platform: str) -> tuple[str, str]:
            source = demo_source(session, resources, org.id, server, platform)
            credentials = tenancy.config_of(source, resources.vault).credentials
            secret_name = PLATFORMS[platform].secret_name
            secret = credentials[secret_name] if secret_name else ""
            return tenancy.webhook_url(settings.public_url, source), secret

        url, secret = target(provider)
        calls_url, calls_secret = target(analysed) if analysed else (None, "")
        return DemoSource(org.id, api_key, url, secret, server, provider, calls_url, calls_secret)


def _demo_org(session: Session, key_file: Path) -> tuple[Org, str]:
    """The demo org and its key, the same on every run: the key is stored hashed, so the one
    printed last time is kept in `key_file` (0600) and a new one minted only when it no longer
    belongs to the demo org (deleted, another database)."""
    org = session.scalar(select(Org).where(Org.name == DEMO_ORG))
    if org is None:
        org, api_key = tenancy.create_org(session, tenancy.OrgIn(name=DEMO_ORG), utcnow())
    else:
        kept = key_file.read_text().strip() if key_file.exists() else ""
        if kept and keys.org_of(session, kept) == org.id:
            return org, kept
        _, api_key = keys.issue(session, org.id, utcnow(), name=DEMO_KEY_NAME)
    _keep(key_file, api_key)
    return org, api_key


def _keep(path: Path, secret: str) -> None:
    """Written whole and readable by its owner only from the start (no window at 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(secret + "\n")
    os.replace(partial, path)


def demo_source(
    session: Session, resources: Runtime, org_id: str, server: DetailServer, provider: str
) -> Source:
    """The demo source for `provider`, reading details from `server` (the platform's API path)."""
    name = DEMO_SOURCE if provider == "generic" else f"{DEMO_SOURCE}-{provider}"
    settings = (
        {"detail_url": server.detail_url}
        if provider == "generic"
        else {"api_base_url": server.api_base_url(provider)}
    )
    source = session.scalar(select(Source).where(Source.org_id == org_id, Source.name == name))
    if source is None:
        data = tenancy.SourceIn(
            name=name,
            provider=provider,
            settings=tenancy.SourceSettings.model_validate(settings),
            credentials=_demo_credentials(provider, {}),
        )
        guard = ssrf.Guard(resources.settings.allow_private_targets)
        source, _ = tenancy.create_source(
            session, resources.vault, org_id, data, utcnow(), guard=guard
        )
        return source
    if source.provider != provider:
        raise Conflict(
            f"the demo org's source {name!r} uses provider {source.provider!r}, "
            f"not {provider!r}; rename it to run the demo"
        )
    source.settings = {**source.settings, **settings}  # a new dict marks it dirty
    kept = providers.canonical_credentials(provider, resources.vault.open(source.credentials))
    if (wanted := _demo_credentials(provider, kept)) != kept:
        source.credentials = resources.vault.seal(wanted)
    return source


def _demo_credentials(provider: str, kept: dict[str, str]) -> dict[str, str]:
    """`kept` plus what the demo's platform needs: the demo plays both sides, so it picks them.

    The generic source generates its own secret and needs no API key."""
    if provider == "generic":
        return kept
    wanted = {"api_key": new_token()}
    if secret_name := PLATFORMS[provider].secret_name:
        wanted[secret_name] = new_token()
    return wanted | kept


def start_demo(stack: ExitStack, settings: Settings, demo: DemoSource) -> "DemoReporter":
    resources = stack.enter_context(runtime.opened(settings))
    traffic = stack.enter_context(DemoTraffic(demo))
    return DemoReporter(traffic, demo, resources)


class DemoTraffic:
    """Simulated calls played into the demo source from a background thread, one per second."""

    def __init__(self, demo: DemoSource) -> None:
        self.latest = Progress()
        self._demo = demo
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name="callwatch-demo", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(SIMULATION_STOP_TIMEOUT_S)

    def _play(self) -> None:
        try:
            run_simulation(
                self._demo.webhook_url,
                self._demo.secret,
                calls=None,
                rate=DEMO_RATE,
                server=self._demo.server,
                stop=self._stop,
                provider=self._demo.provider,
                calls_url=self._demo.calls_url,
                calls_secret=self._demo.calls_secret,
                on_progress=self._record,
            )
        except Exception as exc:
            print(
                f"callwatch: the demo traffic stopped: {type(exc).__name__}: {exc}", file=sys.stderr
            )

    def _record(self, progress: Progress) -> None:
        self.latest = progress


class DemoReporter:
    """Prints one progress line: calls played, events accepted, calls assembled (this run)."""

    def __init__(self, traffic: DemoTraffic, demo: DemoSource, resources: Runtime) -> None:
        self._traffic = traffic
        self._demo = demo
        self._sessions = resources.sessions
        self._since = utcnow()

    def report(self) -> None:
        print(self.line(), flush=True)

    def line(self) -> str:
        progress = self._traffic.latest
        assembled = _count_assembled(self._sessions, self._demo.org_id, self._since)
        line = (
            f"demo: {progress.calls_done} calls played, {progress.accepted} events accepted, "
            f"{'?' if assembled is None else assembled} calls assembled"
        )
        if progress.rejected or progress.errors:
            line += f", {sum(progress.rejected.values())} rejected, {progress.errors} send errors"
        return line


def _count_assembled(sessions: sessionmaker[Session], org_id: str, since: datetime) -> int | None:
    query = (
        select(func.count())
        .select_from(Call)
        .where(Call.org_id == org_id, Call.assembly_state == "assembled", Call.created_at >= since)
    )
    try:
        with transaction(sessions) as session:
            return session.scalar(query) or 0
    except StoreUnavailable:
        return None
