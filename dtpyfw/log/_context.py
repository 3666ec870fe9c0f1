"""Stamp the request context and the service identity onto every log record."""

from __future__ import annotations

__all__ = [
    "CONTEXT_FIELDS",
    "INJECTED_FIELDS",
    "RESERVED_ATTRS",
    "ContextFilter",
    "record_extras",
]

import logging
from typing import Any

from dtpyfw.core.context import current_context

#: Context variables copied onto records, in output order.
CONTEXT_FIELDS: tuple[str, ...] = ("request_id", "correlation_id", "trace_id", "span_id")
#: Every attribute :class:`ContextFilter` adds.
INJECTED_FIELDS: frozenset[str] = frozenset((*CONTEXT_FIELDS, "service", "version"))

#: Attributes that are not ``extra=`` fields: the LogRecord's own, those formatters
#: add (``message``, ``asctime``) and the injected ones.
RESERVED_ATTRS: frozenset[str] = (
    frozenset((*logging.makeLogRecord({}).__dict__, "message", "asctime", "taskName"))
    | INJECTED_FIELDS
    # uvicorn attaches an ANSI-coloured copy of its message; it is not data.
    | {"color_message"}
)


class ContextFilter(logging.Filter):
    """Copy ``request_id``, ``correlation_id``, ``trace_id``, ``span_id``, ``service``
    and ``version`` onto each record.

    It runs in the thread that logged, so the context variables are the caller's
    even when a handler ships the record from another thread. A value passed
    explicitly with ``extra=`` wins over the context.
    """

    def __init__(self, service: str = "dtpyfw", version: str = "0.0.0") -> None:
        super().__init__()
        self.service = service
        self.version = version

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields and let the record through."""
        context = current_context()
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, getattr(context, name))
        if getattr(record, "service", None) is None:
            record.service = self.service
        if getattr(record, "version", None) is None:
            record.version = self.version
        return True


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller attached with ``extra=`` (not the standard or injected ones)."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in RESERVED_ATTRS and not key.startswith("_")
    }
