"""Typed settings for the logging subsystem: level, format and where records go."""

from __future__ import annotations

__all__ = ["FileLogSettings", "LogSettings", "ShippingSettings", "SyslogSettings"]

import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class FileLogSettings(BaseModel):
    """A size-rotated log file (``logging.handlers.RotatingFileHandler``)."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(
        default=Path("logs/service.log"),
        description="Log file path; missing parent directories are created.",
    )
    max_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=0,
        description="Rotate once the file would grow past this many bytes; 0 never rotates.",
    )
    backup_count: int = Field(
        default=5,
        ge=0,
        description="How many rotated files (service.log.1, .2, ...) to keep.",
    )


class SyslogSettings(BaseModel):
    """A syslog daemon reached over UDP/TCP (``host:port``) or a unix socket path."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field(
        default="localhost:514",
        description="'host:port' of a syslog server, or a unix socket path such as /dev/log.",
    )
    facility: str = Field(
        default="user",
        description="Syslog facility name (user, daemon, local0 ... local7).",
    )
    protocol: Literal["udp", "tcp"] = Field(
        default="udp",
        description="Transport for a 'host:port' address; ignored for unix sockets.",
    )

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        _parse_syslog_address(value)
        return value

    @field_validator("facility")
    @classmethod
    def _check_facility(cls, value: str) -> str:
        name = value.strip().lower()
        import logging.handlers  # ~15 ms: paid only when syslog is configured

        known = logging.handlers.SysLogHandler.facility_names
        if name not in known:
            raise ValueError(f"unknown syslog facility {value!r}; known: {sorted(known)}")
        return name

    def socket_address(self) -> str | tuple[str, int]:
        """The address in the form ``SysLogHandler`` expects."""
        return _parse_syslog_address(self.address)


class ShippingSettings(BaseModel):
    """Batched HTTP shipping of JSON records to a log aggregator."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        default="http://localhost:8080/logs",
        description="Aggregator endpoint; each request POSTs a JSON array of records.",
    )
    batch_size: int = Field(default=100, ge=1, description="Most records sent in one request.")
    flush_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds a partial batch waits for more records before it is sent.",
    )
    queue_size: int = Field(
        default=10_000,
        ge=1,
        description="Records held in memory while waiting; when full, new records are dropped.",
    )
    timeout: float = Field(
        default=5.0, gt=0, description="Seconds each HTTP request may take before it fails."
    )
    close_timeout: float = Field(
        default=5.0,
        ge=0,
        description="Seconds shutdown waits for queued records to be sent.",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra request headers (e.g. Authorization); values are secrets.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        import httpx  # only when shipping is configured: keeps settings imports cheap

        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"invalid URL: {exc}") from exc
        if url.scheme not in {"http", "https"} or not url.host:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value


class LogSettings(BaseModel):
    """How a service logs: level, format, destinations and what to redact."""

    model_config = ConfigDict(extra="forbid")

    level: str = Field(
        default="INFO",
        description="Root log level: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
    )
    format: Literal["json", "console"] = Field(
        default="console",
        description="'json': one JSON object per line; 'console': a readable line.",
    )
    stdout: bool = Field(default=True, description="Write records to standard output.")
    file: FileLogSettings | None = Field(
        default=None, description="Also write to a rotating file; omit to disable."
    )
    syslog: SyslogSettings | None = Field(
        default=None, description="Also send to syslog; omit to disable."
    )
    shipping: ShippingSettings | None = Field(
        default=None,
        description="Also ship JSON batches to an HTTP log aggregator; omit to disable.",
    )
    loggers: dict[str, str] = Field(
        default_factory=dict,
        description="Per-logger levels, e.g. {'sqlalchemy.engine': 'WARNING'}.",
    )
    redact_keys: list[str] = Field(
        default_factory=list,
        description="Key names masked in addition to the built-in list (password, token, ...).",
    )

    @field_validator("level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        return _normalise_level(value)

    @field_validator("loggers")
    @classmethod
    def _check_logger_levels(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: _normalise_level(level) for name, level in value.items()}


def _normalise_level(value: str) -> str:
    name = value.strip().upper()
    known = logging.getLevelNamesMapping()
    if name not in known:
        raise ValueError(f"unknown log level {value!r}; known: {sorted(known)}")
    return name


def _parse_syslog_address(value: str) -> str | tuple[str, int]:
    if "/" in value:
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected 'host:port' or a unix socket path, got {value!r}")
    return host.strip("[]"), int(port)
