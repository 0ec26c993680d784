"""Traces: one from a webhook through intake, the queue, the worker's steps, the detail fetch and
the stored record to its delivery; spans exported over OTLP only when the variables say so."""

import json
import time
from collections.abc import Sequence

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from callwatch import queue, tracing
from callwatch.settings import Settings
from callwatch.simulator import BackgroundServer, DetailServer, events_for
from tests.conftest import create_org, create_source, path_of, signed
from tests.downstream.test_deliveries import Receiver, subscribe
from tests.factories import Tenant, eventually, in_state, wait_for_call
from tests.pipeline.test_steps import hand_call

WEBHOOK = "POST /webhooks/{webhook_token}"


def chain(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[str]:
    """The names from `span` up to its trace's root, through each parent."""
    by_id = {each.context.span_id: each for each in spans}
    names = [span.name]
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def test_one_trace_from_the_webhook_to_the_delivery(
    client: TestClient, worker: None, spans: InMemorySpanExporter
) -> None:
    key = create_org(client)
    owner = Tenant(org_id="", key=key, source_id="", source="")
    with DetailServer() as server, Receiver() as receiver:
        source = create_source(client, key, settings={"detail_url": server.detail_url})
        subscribe(client, owner, receiver.script("hook"), event_types=["call.assembled"])
        call = hand_call("traced-1")
        server.add(call)
        for body in events_for(call, embed_detail=False):
            raw = json.dumps(body).encode()
            reply = client.post(
                path_of(source["webhook_url"]),
                content=raw,
                headers=signed(source["webhook_secret"], raw),
            )
            assert reply.status_code == 202
        wait_for_call(client, key, "traced-1", in_state("assembled"))
        eventually(lambda: any(each.name == "POST" for each in spans.get_finished_spans()))
        eventually(lambda: len(receiver.at("hook")) == 1)
    time.sleep(0.2)  # the consumer span of the delivery's task ends after its POST
    finished = spans.get_finished_spans()

    [post] = [each for each in finished if each.name == "POST"]
    # The call is assembled in the run that applied its last event (no recording to wait for).
    assert chain(post, finished) == [
        "POST",
        "run callwatch.deliver",
        "run callwatch.ingest",
        "send callwatch.ingest",
        WEBHOOK,
    ]
    assert (post.kind, dict(post.attributes or {})["http.response.status_code"]) == (
        SpanKind.CLIENT,
        200,
    )
    [fetch] = [each for each in finished if each.name == "fetch details"]
    [get] = [each for each in finished if each.name == "GET"]
    [stored] = [each for each in finished if each.name == "store records"]
    assert chain(get, finished)[:2] == ["GET", "fetch details"]
    assert dict(get.attributes or {})["http.response.status_code"] == 200
    assert [event.name for event in stored.events] == ["record stored"]
    assert {fetch.context.trace_id, stored.context.trace_id} == {post.context.trace_id}

    webhooks = [each for each in finished if each.name == WEBHOOK]
    assert len(webhooks) == len(events_for(call, embed_detail=False))
    assert all(each.parent is None and each.kind == SpanKind.SERVER for each in webhooks)
    # Every webhook's span is linked from the message that carried its events.
    sends = [each for each in finished if each.name == "send callwatch.ingest"]
    linked = {link.context.span_id for send in sends for link in send.links}
    assert linked == {each.context.span_id for each in webhooks}
    assert all(send.parent is not None and send.parent.span_id in linked for send in sends)


def test_off_no_span_is_made_and_no_traceparent_sent(client: TestClient) -> None:
    assert not tracing.on()
    with tracing.span("anything") as span:
        assert not span.get_span_context().is_valid
    assert tracing.current() is None
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}


def test_configure_is_off_without_an_otlp_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in tracing.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    assert tracing.configure("callwatch-test") is False
    assert not tracing.on()


class Collector(BackgroundServer):
    """An OTLP/HTTP trace collector on loopback: keeps each export request it is sent."""

    def __init__(self) -> None:
        self.exports: list[ExportTraceServiceRequest] = []
        super().__init__(Starlette(routes=[Route("/v1/traces", self._export, methods=["POST"])]))

    async def _export(self, request: Request) -> Response:
        self.exports.append(ExportTraceServiceRequest.FromString(await request.body()))
        return Response(status_code=200, media_type="application/x-protobuf")


def test_with_an_otlp_endpoint_spans_are_exported_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with Collector() as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{collector.url}/v1/traces")
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        try:
            assert tracing.configure("callwatch-test") is True
            with tracing.span("exported", attributes={"callwatch.call_id": "call_1"}):
                pass
            tracing.flush()
        finally:
            tracing.uninstall()

    [export] = collector.exports
    [resource_spans] = export.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "callwatch-test"
    assert [span.name for scope in resource_spans.scope_spans for span in scope.spans] == [
        "exported"
    ]


def test_a_failed_task_s_span_is_marked_an_error(
    settings: Settings, worker: None, spans: InMemorySpanExporter
) -> None:
    redis = Redis.from_url(settings.broker_url)
    # Two arguments where ingest takes one: the task raises TypeError as it is called.
    redis.lpush(queue.QUEUE, queue._task_message(queue.INGEST, [["evt_nope"], "extra"]))
    eventually(
        lambda: any(each.name == "run callwatch.ingest" for each in spans.get_finished_spans())
    )

    [run] = [each for each in spans.get_finished_spans() if each.name == "run callwatch.ingest"]
    assert (run.status.status_code, run.status.description) == (StatusCode.ERROR, "TypeError")
    assert [event.name for event in run.events] == ["exception"]
