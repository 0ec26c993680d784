"""Seed a callwatch Postgres database with realistic assembled calls, fast (COPY).

Usage (from the repository root):

    uv run python bench/seed.py --database-url postgresql://postgres@127.0.0.1:5432/callwatch_seed
        [--create] [--calls 1000000] [--other-calls 50000] [--days 90] [--agents 50]
        [--templates 3000] [--chunk 50000] [--seed 1]

`--create` creates the database first. The database is migrated to the latest schema either way
(a no-op when it already is) and must not hold the orgs "acme" / "globex" yet. bench/queries.py
imports `seed()` from here.

What it does:

1. Two orgs through callwatch.tenancy (API keys stored hashed; printed once at the end): "acme"
   with two generic sources (voice-us, costs in USD; voice-eu, costs in EUR) and `--agents`
   agents of the simulator's three kinds (sales: outbound with campaigns; support: inbound;
   booking: both ways) whose volumes follow a skewed curve (the busiest: ~13x the median);
   "globex" with one source, 6 agents whose ids are also acme agent ids (so org scoping is
   real) and `--other-calls` calls.
2. `--templates` template calls from callwatch.simulator.make_call, 15 % of the answered ones
   stretched to a 2-6x longer conversation (long real calls), each assembled by the real code
   path: the generic adapter parses its webhooks, state.fold, calls._apply_state, assembly.merge,
   assembly.recording_of, metrics.compute, assembly.build, calls.copy_columns.
3. Start times over `--days` back from now, weighted by weekday and hour of day (US business
   hours in UTC) with a slight growth trend, inserted in time order like a live system (both
   orgs interleaved). Every call is a template plus its own identity: ids, agent, campaign,
   customer number (from a pool with repeat callers), times, currency. Its record / details /
   fields JSON are spliced from pre-serialised template parts (tens of microseconds a row);
   every `--check-every`-th row is also built by the slow real path and must match field by
   field, else the seed stops.
   Mix: statuses as the simulator weights them (completed 75 %, no_answer 10 %, busy, failed,
   canceled 5 % each); 1 % of the answered calls have their recording missing; 0.05 % of all
   calls failed assembly (no record); a handful in flight (queued, initiated, ringing,
   in_progress) or awaiting their recording in the last minutes. Calls without a record get
   their inbox events (the API builds their partial record from those); assembled calls get
   none (the query API never reads them).
4. COPY in chunks of `--chunk` rows, one transaction each, printing rows/s; then
   VACUUM (ANALYZE) calls, so index-only scans see an all-visible table, and ANALYZE the rest.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness
import psycopg
from psycopg.types.json import Jsonb

from callwatch import ids, providers
from callwatch.calls import assembly
from callwatch.calls import store as calls
from callwatch.crypto import Vault
from callwatch.model import call_metrics
from callwatch.model.events import TERMINAL_STATUSES, CallEvent, CallStatus
from callwatch.model.records import CallDetails, LatencySamples, Recording, Utterance
from callwatch.orgs import tenancy
from callwatch.outbound.ssrf import Guard
from callwatch.providers.base import WebhookRequest
from callwatch.simulator import cost_of, make_call, recording_url
from callwatch.tables import Call

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GENERIC = providers.get("generic")
MAIN_ORG = "acme"
OTHER_ORG = "globex"

# Simulator agent -> (label, campaigns its outbound calls belong to).
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sales-bot": ("Sales", ("spring-promo", "renewals", "winback", "upsell", "cross-sell")),
    "support-bot": ("Support", ()),
    "booking-bot": ("Booking", ("checkup-reminders", "recall", "no-show-followup")),
}
# Monday first; UTC hours 0-23 (US business hours are ~13-01 UTC).
WEEKDAY_WEIGHTS = (1.0, 1.05, 1.05, 1.0, 0.9, 0.35, 0.2)
# fmt: off
HOUR_WEIGHTS = (
    0.9, 0.7, 0.45, 0.25, 0.12, 0.08, 0.06, 0.06, 0.08, 0.12, 0.2, 0.35,
    0.6, 0.9, 1.0, 1.0, 0.95, 0.9, 0.95, 1.0, 1.0, 0.95, 0.9, 1.0,
)
# fmt: on
LONG_CALL_SHARE = 0.15
MISSING_RECORDING_SHARE = 0.01
FAILED_ASSEMBLY_SHARE = 0.0005
FAILED_ERROR = "detail fetch failed: HTTP 503 Service Unavailable"
RECORDING_WAIT_MS = 600_000
# Calls with these columns differ from call to call; every other column is the template's.
DYNAMIC_COLUMNS = (
    "id",
    "org_id",
    "source_id",
    "provider_call_id",
    "agent_id",
    "campaign_id",
    "from_number",
    "to_number",
    "customer_number",
    "started_at",
    "answered_at",
    "ended_at",
    "cost_currency",
    "fields",
    "details",
    "record",
    "assembled_at",
    "recording_deadline",
    "created_at",
    "updated_at",
)
RECORD_DYNAMIC = {
    "id",
    "org_id",
    "source",
    "provider_call_id",
    "agent_id",
    "agent_name",
    "campaign_id",
    "from_number",
    "to_number",
    "customer_number",
    "created_at",
    "initiated_at",
    "answered_at",
    "ended_at",
    "recording",
    "cost",
    "timeline",
    "assembly",
    "updated_at",
}
DETAILS_DYNAMIC = RECORD_DYNAMIC & set(CallDetails.model_fields)
COLUMNS = [column.name for column in Call.__table__.columns]
JSON_COLUMNS = {"fields", "details", "record"}


# ---------------------------------------------------------------- orgs and agents


@dataclass(frozen=True)
class Agent:
    agent_id: str
    name: str
    kind: str  # the simulator agent whose calls this agent's calls are made from
    number: str
    campaigns: tuple[str, ...]
    source: int  # index into the org's sources
    currency: str
    weight: float


@dataclass
class OrgSeed:
    name: str
    org_id: str = ""
    api_key: str = ""
    sources: list[tuple[str, str]] = field(default_factory=list)  # (id, name)
    agents: list[Agent] = field(default_factory=list)
    calls: int = 0


@dataclass
class SeedResult:
    orgs: list[OrgSeed]
    calls: int
    inbox_rows: int
    load_s: float
    vacuum_s: float
    total_s: float
    checked: int
    statuses: dict[str, int]
    rollups_s: float = 0.0  # `fill_rollups`: the stats rollups from the calls

    @property
    def rows_per_s(self) -> float:
        return self.calls / self.load_s if self.load_s else 0.0


def make_agents(rng: random.Random, count: int, *, eu_every: int) -> list[Agent]:
    """`count` agents cycling through the kinds; every `eu_every`-th runs on the EU source."""
    kinds = list(KINDS)
    ranks = list(range(1, count + 1))
    rng.shuffle(ranks)
    agents = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        label, campaigns = KINDS[kind]
        number = index // len(kinds) + 1
        eu = eu_every > 0 and index % eu_every == eu_every - 1
        picked = tuple(rng.sample(campaigns, k=min(len(campaigns), rng.randint(1, 3))))
        agents.append(
            Agent(
                agent_id=f"{kind}-{number:02d}",
                name=f"{label} bot {number}",
                kind=kind,
                number=f"+4930{rng.randrange(10**8):08d}" if eu else f"+1555{index:07d}",
                campaigns=picked,
                source=1 if eu else 0,
                currency="EUR" if eu else "USD",
                weight=ranks[index] ** -0.8,
            )
        )
    return agents


def create_orgs(
    database_url: str, orgs: Sequence[OrgSeed], sources: Sequence[Sequence[str]]
) -> None:
    """The orgs, their first API keys and their generic sources, as `callwatch` creates them."""
    from callwatch.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(database_url)
    vault = Vault(harness.SECRET_KEY)
    now = datetime.now(UTC)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            for org, names in zip(orgs, sources, strict=True):
                row, key = tenancy.create_org(session, tenancy.OrgIn(name=org.name), now)
                org.org_id, org.api_key = row.id, key
                for name in names:
                    data = tenancy.SourceIn(name=name, provider="generic")
                    source, _ = tenancy.create_source(
                        session, vault, row.id, data, now, guard=Guard(allow_private=False)
                    )
                    org.sources.append((source.id, source.name))
    finally:
        engine.dispose()


# ---------------------------------------------------------------- templates


@dataclass
class Template:
    """One assembled call without identity or absolute times, plus its pre-serialised parts."""

    kind: str
    direction: str
    status: CallStatus
    detail: CallDetails  # what the platform's detail API returns, identity and times left out
    setup_ms: int
    ring_ms: int
    talk_ms: int  # 0 when never answered
    recording: str  # "available", "missing" or "none" in the record
    attempts: int
    wait_ms: int  # after the end, before assembly could finish (recording wait)
    # Filled by `prepare`:
    parts: list[str] = field(default_factory=list)  # COPY fields; "" where a call fills in
    record_tail: str = ""  # ',"key":value,...' of the record's static members, COPY-escaped
    details_tail: str = ""
    cost: dict[str, Any] | None = None  # the record's cost; the call sets the currency
    details_cost: dict[str, Any] | None = None
    timeline: list[tuple[str, int, str]] = field(default_factory=list)  # (status, ms, event)

    @property
    def answered(self) -> bool:
        return self.talk_ms > 0


def make_templates(rng: random.Random, count: int) -> dict[str, list[Template]]:
    """Simulated calls by agent kind, a share of the answered ones stretched into long calls."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    out: dict[str, list[Template]] = {kind: [] for kind in KINDS}
    for _ in range(count):
        sim = make_call(rng, now)
        detail = sim.detail
        answered = sim.answered_at is not None
        if answered and rng.random() < LONG_CALL_SHARE:
            detail = stretch(rng, detail, rng.randint(2, 6))
        recording = "available" if answered else "none"
        attempts, wait_ms = 1, 0
        if answered and rng.random() < MISSING_RECORDING_SHARE:
            detail = detail.model_copy(update={"recording": None})
            recording, attempts, wait_ms = "missing", 14, RECORDING_WAIT_MS
        setup_ms = round((sim.ringing_at - sim.started_at).total_seconds() * 1000)
        talk_ms = round((detail.duration_s or 0.0) * 1000) if answered else 0
        template = Template(
            kind=sim.agent_id,
            direction=sim.direction,
            status=sim.status,
            detail=detail,
            setup_ms=setup_ms,
            ring_ms=round(sim.ring_s * 1000),
            talk_ms=talk_ms,
            recording=recording,
            attempts=attempts,
            wait_ms=wait_ms,
        )
        out[sim.agent_id].append(template)
    return out


def stretch(rng: random.Random, detail: CallDetails, factor: int) -> CallDetails:
    """The conversation `factor` times as long: its exchanges again, in shuffled orders, before
    its closing lines; latency samples, duration, billing and cost to match."""
    original = list(detail.transcript or [])
    closing_at = max(
        (i for i, u in enumerate(original) if u.role == "assistant"), default=len(original)
    )
    body, closing = original[:closing_at], original[closing_at:]
    samples = detail.latency_samples or LatencySamples()
    turn, stt, llm, tts = (
        list(samples.turn),
        list(samples.stt),
        list(samples.llm),
        list(samples.tts),
    )
    transcript = list(body)
    exchanges: list[list[Utterance]] = []  # each starts with an assistant line
    for utterance in body:
        if utterance.role == "assistant" or not exchanges:
            exchanges.append([])
        exchanges[-1].append(utterance)
    extras = [
        u for _ in range(factor - 1) for ex in rng.sample(exchanges, k=len(exchanges)) for u in ex
    ]
    for utterance in [*extras, *closing]:
        start = (transcript[-1].end_s or 0.0) + rng.uniform(0.7, 1.8) if transcript else 0.5
        length = (utterance.end_s or 0.0) - (utterance.start_s or 0.0)
        transcript.append(
            utterance.model_copy(
                update={"start_s": round(start, 2), "end_s": round(start + length, 2)}
            )
        )
        if utterance.role == "assistant" and utterance not in closing:
            parts = (rng.uniform(150, 400), rng.uniform(300, 900), rng.uniform(100, 300))
            for target, value in zip((stt, llm, tts), parts, strict=True):
                target.append(round(value, 1))
            turn.append(round(sum(parts) + rng.uniform(10, 80), 1))
    talk_s = round((transcript[-1].end_s or 0.0) + rng.uniform(0.5, 2.0), 3)
    currency = detail.cost.currency if detail.cost else "USD"
    return detail.model_copy(
        update={
            "transcript": transcript,
            "latency_samples": LatencySamples(turn=turn, stt=stt, llm=llm, tts=tts),
            "duration_s": talk_s,
            "billed_duration_s": float(math.ceil(talk_s / 60) * 60),
            "cost": cost_of(rng, talk_s, currency or "USD"),
        }
    )


# ---------------------------------------------------------------- one call, the slow real way


@dataclass(frozen=True, slots=True)
class Identity:
    call_id: str
    provider_call_id: str
    org_id: str
    source_id: str
    source_name: str
    agent: Agent
    campaign_id: str | None
    customer: str
    started_ms: int
    assembly_delay_ms: int


@dataclass(frozen=True)
class Times:
    started: int
    ringing: int
    answered: int | None
    ended: int
    assembled: int

    @classmethod
    def of(cls, template: Template, identity: Identity) -> Times:
        started = identity.started_ms
        ringing = started + template.setup_ms
        answered = ringing + template.ring_ms if template.answered else None
        ended = (
            (answered + template.talk_ms) if answered is not None else ringing + template.ring_ms
        )
        assembled = ended + template.wait_ms + identity.assembly_delay_ms
        return cls(started, ringing, answered, ended, assembled)


def at(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def numbers(template: Template, identity: Identity) -> tuple[str, str]:
    """(from, to): the agent calls the customer, or the customer calls the agent."""
    if template.direction == "outbound":
        return identity.agent.number, identity.customer
    return identity.customer, identity.agent.number


def platform_detail(template: Template, identity: Identity, times: Times) -> CallDetails:
    """What the platform's detail API says about this call."""
    from_number, to_number = numbers(template, identity)
    update: dict[str, Any] = {
        "agent_id": identity.agent.agent_id,
        "agent_name": identity.agent.name,
        "campaign_id": identity.campaign_id,
        "from_number": from_number,
        "to_number": to_number,
        "customer_number": identity.customer,
        "created_at": at(times.started),
        "initiated_at": at(times.started),
        "answered_at": at(times.answered) if times.answered is not None else None,
        "ended_at": at(times.ended),
    }
    detail = template.detail
    if detail.recording is not None:
        url = recording_url_of(identity.provider_call_id)
        update["recording"] = Recording(status="available", url=url, dual_url=f"{url}?channels=2")
    if detail.cost is not None:
        update["cost"] = detail.cost.model_copy(update={"currency": identity.agent.currency})
    return detail.model_copy(update=update)


def recording_url_of(provider_call_id: str) -> str:
    return recording_url("https://recordings.callwatch-sim.invalid", provider_call_id)


def webhooks(
    template: Template, identity: Identity, times: Times, steps: int | None = None
) -> list[tuple[bytes, CallEvent]]:
    """The call's generic webhooks (raw body, parsed event), the first `steps` of them."""
    plan: list[tuple[CallStatus, int]] = [
        (CallStatus.initiated, times.started),
        (CallStatus.ringing, times.ringing),
    ]
    if times.answered is not None:
        plan.append((CallStatus.in_progress, times.answered))
    plan.append((template.status, times.ended))
    if steps is not None:
        plan = plan[:steps] if steps > 0 else [(CallStatus.queued, times.started)]
    from_number, to_number = numbers(template, identity)
    out = []
    for status, moment in plan:
        kind = "call.completed" if status in TERMINAL_STATUSES else "call.status_changed"
        body = {
            "type": kind,
            "timestamp": iso(moment),
            "data": {
                "call_id": identity.provider_call_id,
                "status": status.value,
                "agent_id": identity.agent.agent_id,
                "agent_name": identity.agent.name,
                "direction": template.direction,
                "from_number": from_number,
                "to_number": to_number,
                "campaign_id": identity.campaign_id,
                "metadata": {},
            },
        }
        raw = json.dumps(body, separators=(",", ":")).encode()
        request = WebhookRequest(
            body=raw,
            headers={},
            content_type="application/json",
            client_ip=None,
            url="",
            received_at=datetime.now(UTC),
        )
        [event] = GENERIC.parse(request, None)
        out.append((raw, event))
    return out


def build_slow(
    template: Template, identity: Identity, state_kind: str = "assembled", steps: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The call's row (column -> value) and inbox rows, through callwatch's own functions.

    `state_kind`: "assembled", "failed" (assembly gave up), "awaiting_recording" (details
    fetched, recording not yet there) or "in_flight" (the first `steps` events only).
    """
    from callwatch.calls.fold import fold

    times = Times.of(template, identity)
    events = webhooks(template, identity, times, steps if state_kind == "in_flight" else None)
    received = [event.at + timedelta(milliseconds=80) for _, event in events]
    event_ids = [event_id(moment, identity) for moment in received]
    state = fold([(eid, event) for eid, (_, event) in zip(event_ids, events, strict=True)])
    first_seen = received[0] + timedelta(milliseconds=30)
    last_seen = received[-1] + timedelta(milliseconds=30)
    call = Call(
        id=identity.call_id,
        org_id=identity.org_id,
        source_id=identity.source_id,
        provider="generic",
        provider_call_id=identity.provider_call_id,
        started_at=state.started_at,
        fields={},
        assembly_state="pending",
        assembly_attempts=0,
        assembly_failures=0,
        assembly_next_at=None,
        has_recording=False,
        created_at=first_seen,
        updated_at=first_seen,
    )
    calls._apply_state(call, state, last_seen)
    claimed = last_seen + timedelta(milliseconds=20)
    if state_kind != "in_flight":
        call.assembly_attempts = 1
        call.recording_deadline = claimed + timedelta(milliseconds=RECORDING_WAIT_MS)
        call.assembly_next_at = None
        call.assembly_lease_until = None
    if state_kind == "assembled":
        assembled = at(times.assembled)
        detail = platform_detail(template, identity, times)
        merged = assembly.merge(state, detail)
        recording = (
            Recording(status="missing")
            if template.recording == "missing"
            else assembly.recording_of(merged, assembled)
        )
        call.details = detail.model_dump(mode="json", exclude_none=True)
        call.assembly_state = "assembled"
        call.assembly_attempts = template.attempts
        call.assembled_at = assembled
        record = assembly.build(
            call_id=call.id,
            org_id=call.org_id,
            source=identity.source_name,
            provider=call.provider,
            provider_call_id=call.provider_call_id,
            state=state,
            details=merged,
            recording=recording,
            metrics=call_metrics.compute(merged, ringing_at=state.ringing_at),
            assembly=calls.assembly_view(call),
            updated_at=assembled,
        )
        call.record = record.model_dump(mode="json")
        calls.copy_columns(call, record)
        call.updated_at = assembled
    elif state_kind == "failed":
        call.assembly_state = "failed"
        call.assembly_attempts = call.assembly_failures = 6
        call.assembly_last_error = FAILED_ERROR
        call.updated_at = claimed + timedelta(minutes=4)
    elif state_kind == "awaiting_recording":
        detail = platform_detail(template, identity, times).model_copy(update={"recording": None})
        call.details = detail.model_dump(mode="json", exclude_none=True)
        call.assembly_state = "awaiting_recording"
        call.assembly_next_at = claimed + timedelta(seconds=30)
        call.updated_at = claimed + timedelta(milliseconds=200)
    row = {name: getattr(call, name) for name in COLUMNS}
    inbox = [
        {
            "id": eid,
            "org_id": identity.org_id,
            "source_id": identity.source_id,
            "dedupe_key": event.dedupe_key,
            "provider_call_id": identity.provider_call_id,
            "event": Jsonb(event.model_dump(mode="json")),
            "raw_body": raw.decode(),
            "content_type": "application/json",
            "received_at": moment,
            "due_at": moment,
            "processed_at": moment + timedelta(milliseconds=30),
            "call_id": identity.call_id,
            "attempts": 0,
            "last_error": None,
        }
        for eid, moment, (raw, event) in zip(event_ids, received, events, strict=True)
    ]
    return row, inbox


def event_id(moment: datetime, identity: Identity) -> str:
    salt = random.Random(f"{identity.call_id}{moment.isoformat()}").getrandbits(80)
    return ids.new_id("evt", int(moment.timestamp() * 1000), salt)


# ---------------------------------------------------------------- COPY text format


def cell(value: Any) -> str:
    """One field of COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, float | int):
        return repr(value)
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"))
    return escape(str(value))


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def prepare(template: Template, sample: Identity) -> None:
    """Pre-serialise what every call made from this template shares."""
    row, _ = build_slow(template, sample)
    template.parts = ["" if name in DYNAMIC_COLUMNS else cell(row[name]) for name in COLUMNS]
    record = row["record"]
    static = {key: value for key, value in record.items() if key not in RECORD_DYNAMIC}
    template.record_tail = escape("," + dump(static)[1:-1])
    template.cost = record["cost"]
    details = row["details"]
    static = {key: value for key, value in details.items() if key not in DETAILS_DYNAMIC}
    template.details_tail = escape("," + dump(static)[1:-1])
    template.details_cost = details.get("cost")
    template.timeline = [
        (entry["status"], _ms_of(entry["at"]) - sample.started_ms, entry["event"])
        for entry in record["timeline"]
    ]


def _ms_of(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round((moment - EPOCH).total_seconds() * 1000)


class IsoCache:
    """`iso(ms)` as pydantic writes datetimes (…:05.120000Z, or …:05Z on a whole second), with
    the date-and-minute prefix cached: a quarter of `datetime.isoformat`'s cost."""

    def __init__(self) -> None:
        self.prefixes: dict[int, str] = {}

    def __call__(self, ms: int) -> str:
        minute, rest = divmod(ms, 60_000)
        prefix = self.prefixes.get(minute)
        if prefix is None:
            prefix = at(minute * 60_000).isoformat()[:17]
            self.prefixes[minute] = prefix
        seconds, millis = divmod(rest, 1000)
        if millis:
            return f"{prefix}{seconds:02d}.{millis:03d}000Z"
        return f"{prefix}{seconds:02d}Z"


iso_ms = IsoCache()


def iso(moment: datetime | int) -> str:
    if isinstance(moment, int):
        return iso_ms(moment)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


INDEX = {name: COLUMNS.index(name) for name in DYNAMIC_COLUMNS if name in COLUMNS}


def build_fast(template: Template, identity: Identity) -> str:
    """The call's COPY line from the template's parts: what `build_slow` makes, ~20x faster."""
    agent = identity.agent
    started = identity.started_ms
    ringing = started + template.setup_ms
    answered_ms = ringing + template.ring_ms if template.talk_ms else None
    ended_ms = (
        answered_ms + template.talk_ms if answered_ms is not None else ringing + template.ring_ms
    )
    assembled_ms = ended_ms + template.wait_ms + identity.assembly_delay_ms
    # Events arrive 80 ms after they happen and are applied 30 ms later; claimed 20 ms after.
    first_seen = started + 110
    claimed = ended_ms + 130
    s, e, asm = iso_ms(started), iso_ms(ended_ms), iso_ms(assembled_ms)
    a = iso_ms(answered_ms) if answered_ms is not None else None
    if template.direction == "outbound":
        from_number, to_number = agent.number, identity.customer
    else:
        from_number, to_number = identity.customer, agent.number
    pcid = identity.provider_call_id
    cost = template.cost
    if cost is not None and cost["currency"] != agent.currency:
        cost = cost | {"currency": agent.currency}
    if template.recording == "available":
        url = recording_url_of(pcid)
        recording: dict[str, Any] = {
            "status": "available",
            "url": url,
            "dual_url": url + "?channels=2",
            "available_at": asm,
            "archive": None,
        }
    else:
        recording = {"status": template.recording, "url": None, "dual_url": None}
        recording["available_at"] = None
        recording["archive"] = None
    record = {
        "id": identity.call_id,
        "org_id": identity.org_id,
        "source": identity.source_name,
        "provider_call_id": pcid,
        "agent_id": agent.agent_id,
        "agent_name": agent.name,
        "campaign_id": identity.campaign_id,
        "from_number": from_number,
        "to_number": to_number,
        "customer_number": identity.customer,
        "created_at": s,
        "initiated_at": s,
        "answered_at": a,
        "ended_at": e,
        "recording": recording,
        "cost": cost,
        "timeline": [
            {"status": status, "at": iso_ms(started + offset), "event": event}
            for status, offset, event in template.timeline
        ],
        "assembly": {
            "state": "assembled",
            "attempts": template.attempts,
            "assembled_at": asm,
            "last_error": None,
        },
        "updated_at": asm,
    }
    details: dict[str, Any] = {
        "agent_id": agent.agent_id,
        "agent_name": agent.name,
        "from_number": from_number,
        "to_number": to_number,
        "customer_number": identity.customer,
        "created_at": s,
        "initiated_at": s,
        "ended_at": e,
    }
    fields: dict[str, Any] = {"agent_id": agent.agent_id, "agent_name": agent.name}
    if identity.campaign_id is not None:
        details["campaign_id"] = fields["campaign_id"] = identity.campaign_id
    fields |= {
        "direction": template.direction,
        "from_number": from_number,
        "to_number": to_number,
        "metadata": {},
    }
    if a is not None:
        details["answered_at"] = a
    if template.detail.recording is not None:
        url = recording["url"]
        details["recording"] = {"status": "available", "url": url, "dual_url": url + "?channels=2"}
    details_cost = template.details_cost
    if details_cost is not None:
        details["cost"] = details_cost | {"currency": agent.currency}
    parts = template.parts.copy()
    index = INDEX
    parts[index["id"]] = identity.call_id
    parts[index["org_id"]] = identity.org_id
    parts[index["source_id"]] = identity.source_id
    parts[index["provider_call_id"]] = pcid
    parts[index["agent_id"]] = agent.agent_id
    parts[index["campaign_id"]] = identity.campaign_id or "\\N"
    parts[index["from_number"]] = from_number
    parts[index["to_number"]] = to_number
    parts[index["customer_number"]] = identity.customer
    parts[index["started_at"]] = s
    parts[index["answered_at"]] = a or "\\N"
    parts[index["ended_at"]] = e
    parts[index["cost_currency"]] = agent.currency if cost is not None else "\\N"
    parts[index["fields"]] = dump(fields)
    parts[index["details"]] = dump(details)[:-1] + template.details_tail + "}"
    parts[index["record"]] = dump(record)[:-1] + template.record_tail + "}"
    parts[index["assembled_at"]] = asm
    parts[index["recording_deadline"]] = iso_ms(claimed + RECORDING_WAIT_MS)
    parts[index["created_at"]] = iso_ms(first_seen)
    parts[index["updated_at"]] = asm
    return "\t".join(parts)


def compare(fast: str, slow: dict[str, Any]) -> list[str]:
    """Columns where the fast line and the slow row disagree (JSON compared as values)."""
    cells = fast.split("\t")
    problems = []
    for name, text in zip(COLUMNS, cells, strict=True):
        expected = slow[name]
        if name in JSON_COLUMNS and text != "\\N":
            unescaped = text.replace("\\\\", "\\")
            if json.loads(unescaped) != json.loads(dump(expected)):
                problems.append(name)
        elif isinstance(expected, float) and text != "\\N":
            if float(text) != expected:
                problems.append(name)
        elif isinstance(expected, datetime) and text != "\\N":
            if _ms_of(text) != round((expected - EPOCH).total_seconds() * 1000):
                problems.append(name)
        elif text != cell(expected):
            problems.append(name)
    return problems


# ---------------------------------------------------------------- the plan


def start_times(rng: random.Random, count: int, start_ms: int, end_ms: int) -> list[int]:
    """`count` sorted start times in [start, end), weighted by weekday, hour and growth."""
    hours = max(1, math.ceil((end_ms - start_ms) / 3_600_000))
    cumulative = []
    total = 0.0
    for hour in range(hours):
        moment = at(start_ms + hour * 3_600_000)
        total += (
            WEEKDAY_WEIGHTS[moment.weekday()]
            * HOUR_WEIGHTS[moment.hour]
            * (0.8 + 0.4 * hour / hours)
        )
        cumulative.append(total)
    picked = rng.choices(range(hours), cum_weights=cumulative, k=count)
    out = [
        min(end_ms - 1, start_ms + hour * 3_600_000 + int(rng.random() * 3_600_000))
        for hour in picked
    ]
    out.sort()
    return out


class Caller:
    """Customer numbers with repeat callers: a pool per region, drawn towards its head."""

    def __init__(self, rng: random.Random, calls: int) -> None:
        self.rng = rng
        us = [
            f"+1{rng.randrange(201, 990)}{rng.randrange(2_000_000, 10_000_000)}"
            for _ in range(max(1000, calls * 35 // 100))
        ]
        eu = [f"+4915{rng.randrange(10**8, 10**9)}" for _ in range(max(1000, calls // 10))]
        self.pools = {"USD": us, "EUR": eu}

    def __call__(self, currency: str) -> str:
        pool = self.pools[currency]
        return pool[int(len(pool) * self.rng.random() ** 1.5)]


def load(
    connection: psycopg.Connection[Any], lines: Iterator[str], chunk: int, total: int
) -> tuple[int, float]:
    """COPY `lines` into `calls`, one transaction per `chunk` rows; prints progress.
    Returns (rows, seconds)."""
    began = time.perf_counter()
    statement = f"COPY calls ({', '.join(COLUMNS)}) FROM STDIN"
    loaded = 0
    while True:
        count = 0
        with connection.cursor() as cursor, cursor.copy(statement) as copy:
            for batch in batched(itertools.islice(lines, chunk), 500):
                copy.write("\n".join(batch) + "\n")
                count += len(batch)
        connection.commit()
        loaded += count
        elapsed = time.perf_counter() - began
        print(
            f"  {loaded:>10,} / {total:,} calls  {loaded / elapsed:>8,.0f} rows/s  "
            f"{elapsed:6.1f} s  load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        if count < chunk:
            return loaded, elapsed


def batched(items: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(itertools.islice(items, size)):
        yield batch


def seed(
    database_url: str,
    *,
    calls_count: int = 1_000_000,
    other_calls: int = 50_000,
    days: int = 90,
    agents: int = 50,
    templates: int = 3000,
    chunk: int = 50_000,
    check_every: int = 2000,
    seed_value: int = 1,
) -> SeedResult:
    """Create the orgs and load the calls into a migrated database that lacks them."""
    began = time.perf_counter()
    rng = random.Random(seed_value)
    main = OrgSeed(MAIN_ORG, agents=make_agents(rng, agents, eu_every=5))
    other = OrgSeed(OTHER_ORG, agents=make_agents(rng, 6, eu_every=0))
    create_orgs(database_url, [main, other], [["voice-us", "voice-eu"], ["main"]])
    print(f"orgs: {main.name} {main.org_id}, {other.name} {other.org_id}", flush=True)
    by_kind = make_templates(rng, templates)
    for kind_templates in by_kind.values():
        for template in kind_templates:
            agent = next(a for a in main.agents if a.kind == template.kind)
            prepare(template, make_identity(rng, main, agent, template, 1_700_000_000_000, "+1"))
    print(f"templates: {templates} in {time.perf_counter() - began:.1f} s", flush=True)

    calls = Calls(rng, [main, other], by_kind, check_every)
    now_ms = int(time.time() * 1000)
    lines = calls.lines(now_ms, days, calls_count, other_calls)
    with psycopg.connect(database_url) as connection:
        present = {
            name
            for (name,) in connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'calls'"
            )
        }
        missing = [name for name in COLUMNS if name not in present]
        if missing:
            raise RuntimeError(f"calls lacks columns {missing}: migrate the database first")
        total = calls_count + other_calls + sum(recent_counts(calls_count))
        loaded, load_s = load(connection, lines, chunk, total)
        insert_inbox(connection, calls.inbox)
        connection.commit()
    rollups_began = time.perf_counter()
    fill_rollups(database_url)
    rollups_s = time.perf_counter() - rollups_began
    vacuum_began = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE) calls")
        connection.execute("VACUUM (ANALYZE) inbox")
        connection.execute("VACUUM (ANALYZE) stats_rollups")
        connection.execute("VACUUM (ANALYZE) stats_bins")
        connection.execute("ANALYZE orgs, api_keys, sources")
    vacuum_s = time.perf_counter() - vacuum_began
    return SeedResult(
        orgs=[main, other],
        calls=loaded,
        inbox_rows=len(calls.inbox),
        load_s=load_s,
        vacuum_s=vacuum_s,
        rollups_s=rollups_s,
        total_s=time.perf_counter() - began,
        checked=calls.checked,
        statuses=dict(calls.statuses),
    )


def fill_rollups(database_url: str, batch: int = 20_000) -> int:
    """The stats rollups from the seeded calls, as `callwatch stats rebuild` computes them."""
    from callwatch.calls import rollups as stats_rollups
    from callwatch.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    try:
        with transaction(sessions) as session:
            stats_rollups.forget(session)
        done, after, began = 0, "", time.perf_counter()
        while True:
            with transaction(sessions) as session:
                added = stats_rollups.add_batch(session, None, after, batch)
            if not added:
                return done
            done, after = done + len(added), added[-1]
            if done % (batch * 10) == 0:
                rate = done / (time.perf_counter() - began)
                print(f"  rollups: {done:,} calls ({rate:,.0f}/s)", flush=True)
    finally:
        engine.dispose()


class Calls:
    """Generates the COPY lines of all calls in start-time order, collecting their inbox rows."""

    def __init__(
        self,
        rng: random.Random,
        orgs: list[OrgSeed],
        by_kind: dict[str, list[Template]],
        check_every: int,
    ) -> None:
        self.rng = rng
        self.orgs = orgs
        self.by_kind = by_kind
        self.check_every = check_every
        self.inbox: list[dict[str, Any]] = []
        self.statuses: Counter[str] = Counter()
        self.checked = 0

    def lines(self, now_ms: int, days: int, main_calls: int, other_calls: int) -> Iterator[str]:
        rng, rnd = self.rng, self.rng.random
        main, other = self.orgs
        # Terminal calls end 5 minutes before now at the latest; `recent` adds the live ones.
        end_ms = now_ms - 5 * 60_000
        start_ms = now_ms - days * 86_400_000
        plan = heapq.merge(
            ((ms, 0) for ms in start_times(rng, main_calls, start_ms, end_ms)),
            ((ms, 1) for ms in start_times(rng, other_calls, start_ms, end_ms)),
        )
        pickers = [agent_picker(rng, main.agents), agent_picker(rng, other.agents)]
        caller = Caller(rng, main_calls + other_calls)
        for position, (ms, org_index) in enumerate(plan):
            org = self.orgs[org_index]
            agent = next(pickers[org_index])
            template = rng.choice(self.by_kind[agent.kind])
            identity = make_identity(rng, org, agent, template, ms, caller(agent.currency))
            org.calls += 1
            self.statuses[template.status.value] += 1
            if rnd() < FAILED_ASSEMBLY_SHARE:
                yield self.slow_line(template, identity, "failed")
                continue
            line = build_fast(template, identity)
            if position % self.check_every == 0:
                row, _ = build_slow(template, identity)
                problems = compare(line, row)
                if problems:
                    raise RuntimeError(f"fast and slow rows differ in {problems} for {identity}")
                self.checked += 1
            yield line
        yield from self.recent(main, caller, now_ms, main_calls)

    def slow_line(
        self, template: Template, identity: Identity, state: str, steps: int | None = None
    ) -> str:
        row, events = build_slow(template, identity, state, steps)
        self.inbox += events
        return "\t".join(cell(row[name]) for name in COLUMNS)

    def recent(self, org: OrgSeed, caller: Caller, now_ms: int, count: int) -> Iterator[str]:
        """Calls of the last minutes that are not assembled yet: in flight (queued, initiated,
        ringing, in_progress) or answered and awaiting their recording."""
        rng = self.rng
        in_flight, awaiting = recent_counts(count)
        picker = agent_picker(rng, org.agents)
        made = []
        for index in range(in_flight + awaiting):
            agent = next(picker)
            template = rng.choice(
                [t for t in self.by_kind[agent.kind] if t.recording == "available"]
            )
            if index < in_flight:
                ms = now_ms - rng.randint(20_000, 180_000)
                state, steps = "in_flight", index % 4
                status = ("queued", "initiated", "ringing", "in_progress")[steps]
            else:
                ms = now_ms - template.talk_ms - rng.randint(30_000, 120_000)
                state, steps, status = "awaiting_recording", None, template.status.value
            made.append((ms, agent, template, state, steps, status))
        for ms, agent, template, state, steps, status in sorted(made, key=lambda item: item[0]):
            identity = make_identity(rng, org, agent, template, ms, caller(agent.currency))
            org.calls += 1
            self.statuses[status] += 1
            yield self.slow_line(template, identity, state, steps)


def recent_counts(calls: int) -> tuple[int, int]:
    """(in flight, awaiting their recording) among the newest calls of an org with `calls`."""
    return max(4, calls // 200_000), max(2, calls // 400_000)


def agent_picker(rng: random.Random, agents: list[Agent]) -> Iterator[Agent]:
    weights = [agent.weight for agent in agents]
    while True:
        yield from rng.choices(agents, weights=weights, k=10_000)


def make_identity(
    rng: random.Random, org: OrgSeed, agent: Agent, template: Template, ms: int, customer: str
) -> Identity:
    source_id, source_name = org.sources[min(agent.source, len(org.sources) - 1)]
    outbound = template.direction == "outbound"
    campaign = rng.choice(agent.campaigns) if agent.campaigns and outbound else None
    return Identity(
        call_id=ids.new_id("call", ms, rng.getrandbits(80)),
        provider_call_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        org_id=org.org_id,
        source_id=source_id,
        source_name=source_name,
        agent=agent,
        campaign_id=campaign,
        customer=customer,
        started_ms=ms,
        assembly_delay_ms=rng.randint(400, 6000),
    )


def insert_inbox(connection: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    names = list(rows[0])
    statement = (
        f"INSERT INTO inbox ({', '.join(names)}) "
        f"VALUES ({', '.join('%(' + name + ')s' for name in names)})"
    )
    with connection.cursor() as cursor:
        cursor.executemany(statement, rows)


# ---------------------------------------------------------------- command line


def report(result: SeedResult) -> None:
    print(
        f"seeded {result.calls:,} calls in {result.load_s:.1f} s "
        f"({result.rows_per_s:,.0f} rows/s), "
        f"stats rollups {result.rollups_s:.1f} s, "
        f"VACUUM ANALYZE {result.vacuum_s:.1f} s, total {result.total_s:.1f} s; "
        f"{result.inbox_rows} inbox rows; {result.checked} rows checked against the slow path"
    )
    print(f"statuses: {json.dumps(dict(sorted(result.statuses.items())))}")
    for org in result.orgs:
        print(
            f"org {org.name} {org.org_id}: {org.calls:,} calls, {len(org.agents)} agents, "
            f"sources {[name for _, name in org.sources]}, API key {org.api_key}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--create", action="store_true", help="CREATE DATABASE first")
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls of the main org")
    parser.add_argument("--other-calls", type=int, default=50_000, help="calls of the second org")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--templates", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=50_000, help="rows per COPY transaction")
    parser.add_argument("--check-every", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    return harness.run_main(run, args)


def run(args: argparse.Namespace) -> int:
    from callwatch.migrate import upgrade

    if args.create:
        server, name = args.database_url.rsplit("/", 1)
        with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    upgrade(args.database_url)
    result = seed(
        args.database_url,
        calls_count=args.calls,
        other_calls=args.other_calls,
        days=args.days,
        agents=args.agents,
        templates=args.templates,
        chunk=args.chunk,
        check_every=args.check_every,
        seed_value=args.seed,
    )
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
