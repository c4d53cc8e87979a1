"""Trace context helpers: the envelope carries a W3C ``traceparent``."""

from __future__ import annotations

from opentelemetry import context, trace
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
