"""Structured logging: JSON lines with request context, redaction and shipping.

Importing this package configures nothing. A service calls
:func:`configure_logging` once at start::

    from dtpyfw.log import LogSettings, configure_logging

    configure_logging(LogSettings(format="json"), service="orders", version="1.4.0")

The library itself logs to ``logging.getLogger("dtpyfw.<subsystem>")`` with
``extra=`` fields, which the JSON format emits as top-level keys.
"""

import typing as _typing

from dtpyfw.log._settings import FileLogSettings, LogSettings, ShippingSettings, SyslogSettings

if _typing.TYPE_CHECKING:
    from dtpyfw.log._capture import capture_logs
    from dtpyfw.log._configure import configure_logging, reset_logging, uvicorn_log_config
    from dtpyfw.log._context import ContextFilter
    from dtpyfw.log._format import ConsoleFormatter, JsonFormatter
    from dtpyfw.log._redact import DEFAULT_REDACT_KEYS, REDACTED, RedactingFilter
    from dtpyfw.log._shipping import HttpShippingHandler

__all__ = [
    "ConsoleFormatter",
    "ContextFilter",
    "DEFAULT_REDACT_KEYS",
    "FileLogSettings",
    "HttpShippingHandler",
    "JsonFormatter",
    "LogSettings",
    "REDACTED",
    "RedactingFilter",
    "ShippingSettings",
    "SyslogSettings",
    "capture_logs",
    "configure_logging",
    "reset_logging",
    "uvicorn_log_config",
]

# Settings load with every service; handlers and formatters (logging.handlers,
# the JSON formatter) only when logging is configured.
_LAZY = {
    "capture_logs": "dtpyfw.log._capture",
    "configure_logging": "dtpyfw.log._configure",
    "reset_logging": "dtpyfw.log._configure",
    "uvicorn_log_config": "dtpyfw.log._configure",
    "ContextFilter": "dtpyfw.log._context",
    "ConsoleFormatter": "dtpyfw.log._format",
    "JsonFormatter": "dtpyfw.log._format",
    "DEFAULT_REDACT_KEYS": "dtpyfw.log._redact",
    "REDACTED": "dtpyfw.log._redact",
    "RedactingFilter": "dtpyfw.log._redact",
    "HttpShippingHandler": "dtpyfw.log._shipping",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
