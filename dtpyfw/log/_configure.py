"""Install dtpyfw's handlers on the root logger, and take them away again.

Nothing here runs on import: a service calls :func:`configure_logging` once at
start (calling it again swaps the handlers). Handlers installed by other code
stay where they are.
"""

from __future__ import annotations

__all__ = ["active_options", "configure_logging", "reset_logging", "uvicorn_log_config"]

import logging
import logging.handlers
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, TextIO

from dtpyfw.core.errors import ConfigError, ConfigIssue
from dtpyfw.log._context import ContextFilter
from dtpyfw.log._format import ConsoleFormatter, JsonFormatter
from dtpyfw.log._redact import RedactingFilter
from dtpyfw.log._settings import LogSettings
from dtpyfw.log._shipping import HttpShippingHandler, ShippingNoiseFilter

_logger = logging.getLogger("dtpyfw.log")

#: uvicorn's loggers; they are emptied and propagate to the root handlers.
UVICORN_LOGGERS: tuple[str, ...] = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(
    settings: LogSettings, *, service: str = "dtpyfw", version: str = "0.0.0"
) -> None:
    """Route every log record through dtpyfw's handlers, as ``settings`` describe.

    Sets the root level and the per-logger levels, installs one handler per
    destination on the root logger (each with the context and redacting
    filters), and makes uvicorn's loggers propagate to them. Calling it again
    replaces the handlers of the previous call (the new ones are installed
    before the old ones are closed, so no record is lost in between).

    Raises:
        ConfigError: a log file or syslog socket cannot be opened.
    """
    handlers = _build_handlers(settings, service, version)
    with _lock:
        previous = _current.installed
        root = logging.getLogger()
        for handler in handlers:
            root.addHandler(handler)
        if previous is not None:
            for handler in previous.handlers:
                root.removeHandler(handler)
            _restore(previous.saved)
        installed = _Installed(
            handlers=handlers,
            service=service,
            version=version,
            redact_keys=tuple(settings.redact_keys),
        )
        _apply_levels(settings, installed.saved)
        _current.installed = installed
    if previous is not None:
        for handler in previous.handlers:
            handler.close()
    _logger.debug(
        "logging configured",
        extra={"format": settings.format, "handlers": [type(h).__name__ for h in handlers]},
    )


def reset_logging() -> None:
    """Remove and close the handlers :func:`configure_logging` installed and put
    back the logger levels and uvicorn handlers it changed. Harmless when
    logging was never configured."""
    with _lock:
        previous, _current.installed = _current.installed, None
        if previous is None:
            return
        root = logging.getLogger()
        for handler in previous.handlers:
            root.removeHandler(handler)
        _restore(previous.saved)
    for handler in previous.handlers:
        handler.close()


def uvicorn_log_config() -> dict[str, Any]:
    """A ``log_config`` for ``uvicorn.run`` that leaves the handlers to dtpyfw.

    It is an *incremental* ``dictConfig``: it only makes uvicorn's loggers
    propagate. A full config would make ``dictConfig`` close every existing
    handler, dtpyfw's included. Call :func:`configure_logging` before
    ``uvicorn.run(app, log_config=uvicorn_log_config())``.
    """
    return {
        "version": 1,
        "incremental": True,
        # uvicorn writes ``use_colors`` into these when asked; an incremental
        # config ignores formatters, so no uvicorn formatter is installed.
        "formatters": {"default": {}, "access": {}},
        "loggers": {name: {"propagate": True} for name in UVICORN_LOGGERS},
    }


def active_options() -> tuple[str, str, tuple[str, ...]]:
    """``(service, version, redact_keys)`` of the current configuration, or defaults."""
    with _lock:
        installed = _current.installed
        if installed is None:
            return "dtpyfw", "0.0.0", ()
        return installed.service, installed.version, installed.redact_keys


# -- private ---------------------------------------------------------------------


@dataclass
class _Snapshot:
    """What a logger looked like before dtpyfw touched it."""

    level: int
    propagate: bool
    disabled: bool
    handlers: list[logging.Handler] | None  # None: handlers were not touched


@dataclass
class _Installed:
    handlers: list[logging.Handler]
    service: str
    version: str
    redact_keys: tuple[str, ...]
    saved: dict[str, _Snapshot] = field(default_factory=dict)


@dataclass
class _Current:
    installed: _Installed | None = None


_lock = threading.RLock()
_current = _Current()


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """Write to whatever ``sys.stdout`` is when a record arrives (tests swap it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stdout


def _build_handlers(settings: LogSettings, service: str, version: str) -> list[logging.Handler]:
    formatter: logging.Formatter = (
        JsonFormatter() if settings.format == "json" else ConsoleFormatter()
    )
    handlers: list[logging.Handler] = []
    try:
        if settings.stdout:
            handlers.append(_StdoutHandler())
        if settings.file is not None:
            handlers.append(_file_handler(settings))
        if settings.syslog is not None:
            handlers.append(_syslog_handler(settings, service))
        if settings.shipping is not None:
            handlers.append(HttpShippingHandler.from_settings(settings.shipping))
    except BaseException:
        for handler in handlers:
            handler.close()
        raise
    filters = (
        ShippingNoiseFilter(),
        ContextFilter(service, version),
        RedactingFilter(settings.redact_keys),
    )
    for handler in handlers:
        if not isinstance(handler, HttpShippingHandler):  # it always speaks JSON
            handler.setFormatter(formatter)
        for log_filter in filters:
            handler.addFilter(log_filter)
    return handlers


def _file_handler(settings: LogSettings) -> logging.Handler:
    assert settings.file is not None
    path = settings.file.path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return logging.handlers.RotatingFileHandler(
            path,
            maxBytes=settings.file.max_bytes,
            backupCount=settings.file.backup_count,
            encoding="utf-8",
        )
    except OSError as exc:
        raise ConfigError(
            ConfigIssue(path="log.file.path", message=f"cannot open {str(path)!r}: {exc}")
        ) from exc


def _syslog_handler(settings: LogSettings, service: str) -> logging.Handler:
    assert settings.syslog is not None
    syslog = settings.syslog
    try:
        handler = logging.handlers.SysLogHandler(
            address=syslog.socket_address(),
            facility=logging.handlers.SysLogHandler.facility_names[syslog.facility],
            socktype=socket.SOCK_STREAM if syslog.protocol == "tcp" else socket.SOCK_DGRAM,
        )
    except OSError as exc:
        raise ConfigError(
            ConfigIssue(
                path="log.syslog.address",
                message=f"cannot reach syslog at {syslog.address!r}: {exc}",
            )
        ) from exc
    handler.ident = f"{service}: "
    return handler


def _apply_levels(settings: LogSettings, saved: dict[str, _Snapshot]) -> None:
    _snapshot(saved, "", handlers=False)
    logging.getLogger().setLevel(settings.level)
    for name, level in settings.loggers.items():
        _snapshot(saved, name, handlers=False)
        logging.getLogger(name).setLevel(level)
    for name in UVICORN_LOGGERS:
        _snapshot(saved, name, handlers=True)
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
        logger.disabled = False


def _snapshot(saved: dict[str, _Snapshot], name: str, *, handlers: bool) -> None:
    logger = logging.getLogger(name or None)
    current = saved.get(name)
    if current is None:
        saved[name] = _Snapshot(
            level=logger.level,
            propagate=logger.propagate,
            disabled=logger.disabled,
            handlers=list(logger.handlers) if handlers else None,
        )
    elif handlers and current.handlers is None:
        current.handlers = list(logger.handlers)
        current.propagate, current.disabled = logger.propagate, logger.disabled


def _restore(saved: dict[str, _Snapshot]) -> None:
    for name, snapshot in saved.items():
        logger = logging.getLogger(name or None)
        logger.setLevel(snapshot.level)
        if snapshot.handlers is not None:
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            for handler in snapshot.handlers:
                logger.addHandler(handler)
            logger.propagate = snapshot.propagate
            logger.disabled = snapshot.disabled
