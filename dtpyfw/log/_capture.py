"""Collect log records as dicts, for tests."""

from __future__ import annotations

__all__ = ["capture_logs"]

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from dtpyfw.log._configure import active_options
from dtpyfw.log._context import ContextFilter
from dtpyfw.log._format import JsonFormatter
from dtpyfw.log._redact import RedactingFilter


@contextlib.contextmanager
def capture_logs(
    level: str | int = "DEBUG", logger: str | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Yield a list that fills with one dict per record logged in the block.

    Each dict has the keys of the JSON format (``timestamp``, ``level``,
    ``logger``, ``message``, the context fields, ``service``, ``version``,
    extras, ``exc_info``), after context injection and redaction; service,
    version and extra redact keys come from the active :func:`configure_logging`
    call, if any. ``logger`` narrows the capture to one logger and its children.
    For the block, that logger and its descendants are lowered to ``level`` where
    they are set higher (and re-enabled if disabled), so the code under test is
    heard; everything is put back on exit. Works whether or not logging is
    configured.

    Example::

        with capture_logs(logger="dtpyfw.db") as records:
            run_query()
        assert records[0]["message"] == "query ran"
    """
    levelno = _level_number(level)
    service, version, redact_keys = active_options()
    records: list[dict[str, Any]] = []
    handler = _CaptureHandler(records, levelno)
    handler.addFilter(ContextFilter(service, version))
    handler.addFilter(RedactingFilter(redact_keys))
    target = logging.getLogger(logger)
    saved = {each: (each.level, each.disabled) for each in _subtree(target)}
    for each in saved:
        if each.level > levelno or (each is target and each.getEffectiveLevel() > levelno):
            each.setLevel(levelno)
        each.disabled = False
    target.addHandler(handler)
    try:
        yield records
    finally:
        target.removeHandler(handler)
        for each, (level_before, disabled_before) in saved.items():
            each.setLevel(level_before)
            each.disabled = disabled_before
        handler.close()


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    known = logging.getLevelNamesMapping()
    if level.upper() not in known:
        raise ValueError(f"unknown log level {level!r}; known: {sorted(known)}")
    return known[level.upper()]


def _subtree(target: logging.Logger) -> list[logging.Logger]:
    prefix = "" if target is logging.getLogger() else f"{target.name}."
    existing = list(logging.Logger.manager.loggerDict.values())
    children = [
        each
        for each in existing
        if isinstance(each, logging.Logger) and each.name.startswith(prefix)
    ]
    return [target, *children]


class _CaptureHandler(logging.Handler):
    def __init__(self, records: list[dict[str, Any]], level: int) -> None:
        super().__init__(level)
        self.records = records
        self.formatter: JsonFormatter = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append(self.formatter.to_dict(record))
        except Exception:
            self.handleError(record)
