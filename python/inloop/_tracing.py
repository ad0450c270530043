"""The agent's trace context, for the tasks it creates (docs/deployment.md, "Tracing")."""

from __future__ import annotations


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current OpenTelemetry span, or ``None`` when
    ``opentelemetry`` is not installed or no span is active. Read from the span itself, so it
    does not depend on which propagators the application configured.

    Example::

        from opentelemetry import trace

        with trace.get_tracer("agent").start_as_current_span("refund"):
            tp = current_traceparent()  # "00-<trace id>-<span id>-01"
    """
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags) & 0xFF:02x}"
