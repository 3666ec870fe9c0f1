"""Structured logging: JSON lines with request context, redaction and shipping.

Importing this package configures nothing. A service calls
:func:`configure_logging` once at start::

    from dtpyfw.log import LogSettings, configure_logging

    configure_logging(LogSettings(format="json"), service="orders", version="1.4.0")

The library itself logs to ``logging.getLogger("dtpyfw.<subsystem>")`` with
``extra=`` fields, which the JSON format emits as top-level keys.
"""

from dtpyfw.log._capture import capture_logs
from dtpyfw.log._configure import configure_logging, reset_logging, uvicorn_log_config
from dtpyfw.log._context import ContextFilter
from dtpyfw.log._format import ConsoleFormatter, JsonFormatter
from dtpyfw.log._redact import DEFAULT_REDACT_KEYS, REDACTED, RedactingFilter
from dtpyfw.log._settings import FileLogSettings, LogSettings, ShippingSettings, SyslogSettings
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
