"""OpenTelemetry traces, on only when OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (docs/operations.md#traces).

Off, every helper here is one test of a module flag: no span objects, no context switches on the
webhook's path. On, one trace goes from a webhook through intake, the queue message (the W3C
`traceparent` in the Celery message headers, where OpenTelemetry's Celery instrumentation puts
it), the worker's steps, the detail fetch and the stored record, to each delivery.

Here at the base so that every layer may start spans; the exporter is set up by the processes'
composition roots (the web app, the worker) through `configure`.
"""

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import INVALID_SPAN, Link, SpanContext, Status, StatusCode
from opentelemetry.trace import Span as Span
from opentelemetry.trace import SpanKind as SpanKind

TRACER_NAME = "callwatch"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_on = False
_tracer: trace.Tracer = trace.NoOpTracer()
_provider: trace.TracerProvider | None = None
Carrier = dict[str, str]


def on() -> bool:
    return _on


def configure(service_name: str) -> bool:
    """Export spans over OTLP/HTTP if the standard variables name an endpoint; whether on."""
    if _on or not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return _on
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME, when set, names the service instead (the SDK reads it).
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)
    return True


def install(provider: trace.TracerProvider) -> None:
    """Trace through `provider` (configure's, or a test's in-memory one) from now on."""
    global _on, _tracer, _provider
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):  # none set yet
        trace.set_tracer_provider(provider)
    _tracer, _provider = provider.get_tracer(TRACER_NAME), provider
    _on = True


def uninstall() -> None:
    """Stop tracing (the provider stays set: OpenTelemetry sets it once per process)."""
    global _on, _tracer, _provider
    _on, _tracer, _provider = False, trace.NoOpTracer(), None


def flush() -> None:
    """Export the spans still buffered (a process about to stop)."""
    if _provider is not None and hasattr(_provider, "force_flush"):
        _provider.force_flush()


@contextmanager
def span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    *,
    parent: SpanContext | None = None,
    links: Sequence[SpanContext] = (),
) -> Iterator[Span]:
    """A span around the block, current within it; the invalid span when tracing is off."""
    if not _on:
        yield INVALID_SPAN
        return
    context = None if parent is None else trace.set_span_in_context(trace.NonRecordingSpan(parent))
    with _tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=dict(attributes or {}),
        links=[Link(each) for each in links if each.is_valid],
    ) as current:
        yield current


# A batch's span links the first this many of its parts (the SDK's default limit).
MAX_LINKS = 128


@contextmanager
def batch(name: str, parts: Sequence[SpanContext], attributes: Mapping[str, Any]) -> Iterator[Span]:
    """A producer span for one message made of many traced parts: it continues the first part's
    trace and links every part (OpenTelemetry's way for a batch). No parts traced: no span."""
    if not _on or not parts:
        yield INVALID_SPAN
        return
    links = parts[:MAX_LINKS]
    with span(name, SpanKind.PRODUCER, attributes, parent=parts[0], links=links) as made:
        yield made


def failed(span: Span, exc: BaseException) -> None:
    """Mark the span failed by `exc` (its type as the status; the message is recorded with it)."""
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def current() -> SpanContext | None:
    """The current span's context (to link to, or to continue later); None when off."""
    if not _on:
        return None
    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


def inject(headers: dict[str, Any]) -> None:
    """Add the current context's `traceparent` (and `tracestate`) to message headers."""
    if _on:
        propagate.inject(headers)


@contextmanager
def continued(
    carrier: Any, name: str, kind: SpanKind, attributes: Mapping[str, Any]
) -> Iterator[Span]:
    """A span continuing the trace whose `traceparent` `carrier` holds (headers as a mapping,
    or as attributes: Celery's task request)."""
    if not _on:
        yield INVALID_SPAN
        return
    parent = propagate.extract(carrier, getter=_Getter())
    token = otel_context.attach(parent)
    try:
        with _tracer.start_as_current_span(name, kind=kind, attributes=dict(attributes)) as now:
            yield now
    finally:
        otel_context.detach(token)


class _Getter(Getter[Any]):
    """Reads a carrier that is a mapping or an object with attributes (Celery's request)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = carrier.get(key) if isinstance(carrier, Mapping) else getattr(carrier, key, None)
        return None if value is None else [str(value)]

    def keys(self, carrier: Any) -> list[str]:
        return list(carrier) if isinstance(carrier, Mapping) else []
