"""A simulated call's webhooks as deliveries, and the record the pure core makes of them.

The pure core is what the pipeline runs between the inbox and the stored record: each
delivery parsed by its platform's adapter, duplicates dropped on the inbox's dedupe key, the
call's events folded, the platform's details fetched (from the simulator's API answers, in
process) once the first terminal event is in, merged and assembled. `pure_record` runs it for
deliveries in a given processing order.
"""

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from callwatch import providers
from callwatch.calls import assembly
from callwatch.calls.fold import fold
from callwatch.model import call_metrics
from callwatch.model.events import CallEvent
from callwatch.model.records import Assembly, Recording
from callwatch.providers.base import FetchContext, RequestHeaders, SourceConfig, WebhookRequest
from callwatch.simulator.calls import SimCall, make_call, recording_url
from callwatch.simulator.platforms import PLATFORMS

SECRET = "sim-secret"
API = "http://sim.test"
PUBLIC_URL = "http://testserver/webhooks/"
# What the pure core's record is stamped with (the pipeline's clock when it stores a record).
STORED_AT = datetime(2030, 1, 1, tzinfo=UTC)
# Every simulated platform; fixa analyses the simulator's generic calls, and here Vapi's too
# (whose end-of-call report says what the analysis measures again): "fixa:vapi".
ALL_PLATFORMS = (*PLATFORMS, "fixa:vapi")


def played(scenario: str) -> tuple[str, ...]:
    """The platforms whose webhooks a scenario plays: the platform, then the one it analyses."""
    platform, _, analysed = scenario.partition(":")
    analysed = analysed or PLATFORMS[platform].analyses or ""
    return (platform, analysed) if analysed else (platform,)


def owner(scenario: str) -> str:
    """The platform whose call the record is: the analysed one, if the scenario analyses."""
    return played(scenario)[-1]


@dataclass(frozen=True)
class Delivery:
    """One webhook as a platform posts it: the same bytes and headers each time it is sent."""

    source: str  # the platform whose source receives it
    sent_at: datetime  # the platform's clock when it sent it
    body: bytes
    headers: dict[str, str]
    token: str  # the webhook URL's last part, for a source named `source`
    signed_at: float  # the signer's clock (a receiver checks a signature's age)

    def request(self, received_at: datetime) -> WebhookRequest:
        return WebhookRequest(
            body=self.body,
            headers=RequestHeaders(self.headers.items()),
            content_type=self.headers.get("content-type", "application/json"),
            client_ip="127.0.0.1",
            url=PUBLIC_URL + self.token,
            received_at=received_at,
        )


def simulated_call(seed: int, *, answered: bool | None = None) -> SimCall:
    """A call of the simulator's mix (`answered`: only such calls, or only the others)."""
    rng = random.Random(seed)
    while True:
        call = make_call(rng, datetime(2029, 6, 1, 12, tzinfo=UTC), recording_base=API)
        if answered is None or (call.answered_at is not None) == answered:
            return call


def deliveries(
    scenario: str, call: SimCall, tokens: dict[str, str], *, signed_at: float | None = None
) -> list[Delivery]:
    """Every webhook of `call` in a scenario (a platform, and the one it analyses), signed once
    (when it is sent, or at `signed_at`: a receiver checks a signature's age on its clock)."""
    found = []
    for name in played(scenario):
        sim = PLATFORMS[name]
        for at, body in sim.webhooks(call, False):
            now = at.timestamp() if signed_at is None else signed_at
            url = PUBLIC_URL + tokens[name]
            if sim.sign_url is not None:
                content, headers = sim.sign_url(SECRET, body, now, url)
            else:
                content, headers = sim.sign(SECRET, body, now)
            found.append(Delivery(name, at, content, headers, tokens[name], now))
    return sorted(found, key=lambda item: item.sent_at)


def source_config(platform: str, api_base: str = API) -> SourceConfig:
    """A source of `platform` as the simulator test configures it (its API, its secrets)."""
    secret_name = PLATFORMS[platform].secret_name
    settings = (
        {"detail_url": f"{api_base}/calls/{{call_id}}"}
        if platform == "generic"
        else {"api_base_url": f"{api_base}/{platform}"}
    )
    credentials = {"api_key": "sim-key"} | ({secret_name: SECRET} if secret_name else {})
    providers.get(platform).prepare_credentials(credentials)
    return SourceConfig(
        id=f"src_{platform}",
        org_id="org_1",
        name=platform,
        provider=platform,
        settings=settings,
        credentials=credentials,
    )


def parsed(delivery: Delivery, received_at: datetime) -> list[CallEvent]:
    source = source_config(delivery.source)
    adapter = providers.get(source.provider)
    request = delivery.request(received_at)
    delivery_id = adapter.authenticate(request, source, delivery.signed_at)
    return adapter.parse(request, delivery_id)


def simulated_api(call: SimCall, api_base: str = API) -> httpx.Client:
    """The simulator's API answers about `call`, in process; its recording is ready."""
    routes = []
    for name, sim in PLATFORMS.items():
        prefixes = [f"/{name}", ""] if name == "generic" else [f"/{name}"]
        for template, endpoint in sim.api.items():
            pattern = re.escape(template).replace(re.escape("{call_id}"), "(?P<call_id>[^/]+)")
            for prefix in prefixes:
                routes.append((re.compile(re.escape(prefix) + pattern + "$"), name, endpoint))
    recording = (
        Recording(status="none")
        if call.detail.recording is None
        else Recording(
            status="available",
            url=recording_url(api_base, call.call_id),
            dual_url=recording_url(api_base, call.call_id) + "?channels=2",
        )
    )

    def answer(request: httpx.Request) -> httpx.Response:
        for pattern, name, endpoint in routes:
            found = pattern.match(request.url.path)
            if found and found["call_id"] == PLATFORMS[name].call_id(call):
                return httpx.Response(200, json=endpoint(call, recording))
        return httpx.Response(404, json={"error": "not_found"})

    return httpx.Client(transport=httpx.MockTransport(answer))


def times(
    order: Sequence[int], schedule: Sequence[Delivery], late: dict[int, timedelta]
) -> list[datetime]:
    """When each delivery of `order` is received: when it was sent, or `late` after that."""
    return [schedule[index].sent_at + late.get(index, timedelta()) for index in order]


def pure_record(
    scenario: str,
    call: SimCall,
    schedule: Sequence[Delivery],
    order: Sequence[int],
    received: Sequence[datetime],
    *,
    api_base: str = API,
) -> dict[str, Any]:
    """The record of `call` when `schedule`'s deliveries are processed in `order` (indices,
    repeats are duplicates), each received at `received`'s moment."""
    seen: set[tuple[str, str]] = set()
    applied: list[tuple[str, CallEvent]] = []
    context: FetchContext | None = None
    for position, (index, at) in enumerate(zip(order, received, strict=True)):
        delivery = schedule[index]
        for event in parsed(delivery, at):
            key = (delivery.source, event.dedupe_key)
            if key in seen:
                continue  # the inbox keeps one row per source and dedupe key
            seen.add(key)
            applied.append((f"evt_{position:04d}_{len(applied):04d}", event))
        state = fold(applied)
        named = _call_id(applied)
        if context is None and state.terminal and named:
            # The pipeline fetches once a terminal event is applied to a call it can name.
            context = FetchContext(named, state.completion, state.fields)
    assert context is not None, "no terminal event"
    calls = owner(scenario)
    with simulated_api(call, api_base) as client:
        details = providers.get(calls).fetch(client, source_config(calls, api_base), context)
    state = fold(applied)
    merged = assembly.merge(state, providers.settled(calls, details, state.fields))
    built = assembly.build(
        call_id="call_1",
        org_id="org_1",
        source=calls,
        provider=calls,
        provider_call_id=context.provider_call_id,
        state=state,
        details=merged,
        recording=assembly.recording_of(merged, STORED_AT),
        metrics=call_metrics.compute(merged, ringing_at=state.ringing_at),
        assembly=Assembly(state="assembled", attempts=1, assembled_at=STORED_AT),
        updated_at=STORED_AT,
    )
    return built.model_dump(mode="json")


def _call_id(applied: Sequence[tuple[str, CallEvent]]) -> str | None:
    """The platform's id of the call: what its own events name it by (an analysis joins it,
    a Burki report names no call and waits for the status update that does)."""
    names = {event.provider_call_id for _, event in applied if not event.joins}
    names.discard("")
    assert len(names) <= 1, names
    return names.pop() if names else None
