"""Formatters: one JSON object per line, or one readable line for a terminal."""

from __future__ import annotations

__all__ = ["ConsoleFormatter", "JsonFormatter", "iso_timestamp"]

import json
import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _PythonJsonFormatter

from dtpyfw.log._context import CONTEXT_FIELDS, RESERVED_ATTRS, record_extras


class JsonFormatter(_PythonJsonFormatter):
    """Format a record as one JSON object with a fixed set of leading keys.

    Keys, in order: ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, ``request_id``, ``correlation_id``, ``trace_id``, ``span_id``,
    ``service``, ``version``; then the ``extra=`` fields; then ``exc_info`` and
    ``stack_info`` when present. Context keys are ``null`` when unset so every
    line has the same shape.
    """

    def __init__(self) -> None:
        super().__init__(reserved_attrs=sorted(RESERVED_ATTRS))

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON string."""
        return self.serialize_log_record(self.to_dict(record))

    def to_dict(self, record: logging.LogRecord) -> dict[str, Any]:
        """The record as the dict that :meth:`format` serialises."""
        message_dict: dict[str, Any] = {}
        if isinstance(record.msg, dict):
            message_dict = dict(record.msg)
            record.message = ""
        else:
            record.message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._format_exception(record)
        if record.exc_text:
            message_dict.setdefault("exc_info", record.exc_text)
        if record.stack_info:
            message_dict.setdefault("stack_info", record.stack_info)
        log_data: dict[str, Any] = {}
        self.add_fields(log_data, record, message_dict)
        return dict(self.process_log_record(log_data))

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        """Fill ``log_data`` with the fixed keys, the extras, then ``message_dict``."""
        log_data["timestamp"] = iso_timestamp(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        for name in (*CONTEXT_FIELDS, "service", "version"):
            log_data[name] = getattr(record, name, None)
        log_data.update(record_extras(record))
        log_data.update(message_dict)

    def _format_exception(self, record: logging.LogRecord) -> str:
        assert record.exc_info is not None
        return logging.Formatter.formatException(self, record.exc_info)


class ConsoleFormatter(logging.Formatter):
    """Format a record as ``<timestamp> <LEVEL> <logger>: <message> key=value ...``.

    Context fields are appended when set, ``extra=`` fields always; a traceback
    follows on the next lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line (plus the traceback, if any)."""
        record.message = record.getMessage()
        fields = {name: getattr(record, name, None) for name in CONTEXT_FIELDS}
        pairs = [f"{key}={_console_value(value)}" for key, value in fields.items() if value]
        pairs += [f"{key}={_console_value(value)}" for key, value in record_extras(record).items()]
        head = [iso_timestamp(record.created), f"{record.levelname:<8}", f"{record.name}:"]
        line = " ".join([*head, record.message, *pairs])
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


def iso_timestamp(created: float) -> str:
    """``created`` (seconds since the epoch) as ISO 8601 in UTC with milliseconds."""
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _console_value(value: Any) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"'=" for c in value):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except ValueError:  # a circular structure
        return repr(value)
