"""Request-bound context that flows through contextvars to logs and the wire."""

from __future__ import annotations

__all__ = [
    "RequestContext",
    "bind_context",
    "correlation_id",
    "current_context",
    "new_request_id",
    "request_id",
    "span_id",
    "trace_id",
]

import contextlib
import secrets
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

request_id: ContextVar[str | None] = ContextVar("dtpyfw_request_id", default=None)
correlation_id: ContextVar[str | None] = ContextVar("dtpyfw_correlation_id", default=None)
trace_id: ContextVar[str | None] = ContextVar("dtpyfw_trace_id", default=None)
span_id: ContextVar[str | None] = ContextVar("dtpyfw_span_id", default=None)

_VARS: dict[str, ContextVar[str | None]] = {
    "request_id": request_id,
    "correlation_id": correlation_id,
    "trace_id": trace_id,
    "span_id": span_id,
}


@dataclass(frozen=True, slots=True)
class RequestContext:
    """A snapshot of the context variables."""

    request_id: str | None = None
    correlation_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None

    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` header for the current span, if a trace is bound."""
        if not self.trace_id:
            return None
        return f"00-{self.trace_id}-{self.span_id or secrets.token_hex(8)}-01"


def current_context() -> RequestContext:
    """Read every context variable at once."""
    return RequestContext(
        request_id=request_id.get(),
        correlation_id=correlation_id.get(),
        trace_id=trace_id.get(),
        span_id=span_id.get(),
    )


@contextlib.contextmanager
def bind_context(**values: str | None) -> Iterator[RequestContext]:
    """Set context variables for the ``with`` block and restore them after.

    Unknown names are a ``TypeError`` so a typo cannot silently drop a field.
    """
    unknown = set(values) - set(_VARS)
    if unknown:
        raise TypeError(f"unknown context fields: {sorted(unknown)}; known: {sorted(_VARS)}")
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in values.items()]
    try:
        yield current_context()
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def new_request_id() -> str:
    """A fresh, unguessable request id (32 hex characters)."""
    return secrets.token_hex(16)


def parse_traceparent(header: str | None) -> tuple[str, str] | None:
    """``(trace_id, parent_span_id)`` from a W3C traceparent header, or None if malformed."""
    if not header:
        return None
    parts = header.strip().split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        int(parts[1], 16)
        int(parts[2], 16)
    except ValueError:
        return None
    if parts[1] == "0" * 32 or parts[2] == "0" * 16:
        return None
    return parts[1], parts[2]
