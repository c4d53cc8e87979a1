"""Tracing: the process's provider from ``OTEL_*``, and the envelope's W3C ``traceparent``."""

from __future__ import annotations

import atexit
import logging
import os
import threading

from opentelemetry import context, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
tracer = trace.get_tracer("documind")


def current_traceparent() -> str | None:
    """The ``traceparent`` of the active span, if any."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def context_from(traceparent: str | None) -> context.Context:
    """A context whose parent is the span named by ``traceparent``."""
    if not traceparent:
        return context.Context()
    return _propagator.extract({"traceparent": traceparent})


def tracing_enabled() -> bool:
    """Whether an SDK tracer provider is installed (spans would be recorded)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def trace_id_of(traceparent: str | None) -> str:
    """The 32-hex trace id in a W3C ``traceparent`` ('' when there is none)."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


def setup_tracing(service: str, exporters: str, *, instrument_redis: bool = True) -> TracerProvider | None:
    """Install the SDK tracer provider for this process, configured from ``OTEL_*``.

    ``exporters`` is ``OTEL_TRACES_EXPORTER``: a comma-separated list of ``otlp``
    (endpoint, protocol, headers from ``OTEL_EXPORTER_OTLP_*``), ``console``, or
    ``none``. The service name comes from ``OTEL_SERVICE_NAME`` when set, else
    ``service``; the sampler from ``OTEL_TRACES_SAMPLER``/``_ARG``. Spans are
    exported in the background (batches, bounded queue), so an unreachable
    collector never slows or breaks a request: spans are dropped instead.
    """
    names = [n.strip().lower() for n in exporters.split(",") if n.strip()]
    if not names or names == ["none"]:
        return None
    resource = Resource.create({SERVICE_NAME: service})
    if os.environ.get("OTEL_SERVICE_NAME"):  # the standard variable wins (Resource.create reads it)
        resource = Resource.create()
    # At exit, spans still queued get a bounded flush instead of the SDK's shutdown, which
    # waits out the exporter's timeout and retries: with the collector gone, a stopping
    # service would outlast its grace period and be killed.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    atexit.register(_flush_at_exit, provider)
    for name in names:
        if name == "console":
            # One JSON object per line, to stdout (logs go to stderr).
            console = ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n")
            provider.add_span_processor(SimpleSpanProcessor(console))
        elif name == "otlp":
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
        elif name != "none":
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console or none)")
    trace.set_tracer_provider(provider)
    if instrument_redis:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor().instrument(tracer_provider=provider)
    return provider


# How long a stopping process waits for its last spans to reach the collector.
EXIT_FLUSH_TIMEOUT_MS = 2000


def _flush_at_exit(provider: TracerProvider) -> None:
    """Export what is queued, for at most EXIT_FLUSH_TIMEOUT_MS; then drop the rest.

    The export threads are daemons: one still waiting on a dead collector does not
    hold the process.
    """
    # force_flush exports in the calling thread, each attempt bounded only by the
    # exporter's own timeout (10 s by default), so it runs in a daemon thread of its own.
    flushing = threading.Thread(
        target=provider.force_flush, args=(EXIT_FLUSH_TIMEOUT_MS,), name="otel-exit-flush", daemon=True
    )
    flushing.start()
    flushing.join(EXIT_FLUSH_TIMEOUT_MS / 1000)
    if flushing.is_alive():
        logging.getLogger(__name__).warning(
            "exit: spans not exported within %d ms were dropped", EXIT_FLUSH_TIMEOUT_MS
        )


def _otlp_exporter() -> SpanExporter:
    """OTLP over gRPC (the collector's port 4317)."""
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    if protocol != "grpc":
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: DocuMind exports OTLP over grpc")
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter()
