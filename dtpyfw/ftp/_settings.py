"""FTP client settings: server, credentials, TLS, pool, timeouts, retries and root."""

from __future__ import annotations

__all__ = ["FtpSettings"]

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from dtpyfw.core.retry import RetryPolicy

_FORBIDDEN = ("\x00", "\r", "\n")


class FtpSettings(BaseModel):
    """The ``ftp`` section."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, description="server host name or IP address")
    port: int = Field(default=21, ge=1, le=65535, description="control connection port")
    user: str = Field(default="anonymous", min_length=1, description="login user name")
    password: SecretStr | None = Field(default=None, description="login password")
    tls: bool = Field(
        default=False,
        description="FTPS with explicit TLS (AUTH TLS): control and data connections encrypted",
    )
    tls_verify: bool = Field(
        default=True, description="verify the server's certificate and host name (FTPS)"
    )
    ca_file: Path | None = Field(
        default=None, description="CA bundle to trust instead of the system's (FTPS)"
    )
    passive: bool = Field(
        default=True, description="passive mode (the client opens data connections)"
    )
    timeout: float = Field(
        default=30.0,
        gt=0,
        description="seconds to connect, and for each read or write on the control and data "
        "connections",
    )
    pool_size: int = Field(
        default=4, ge=1, le=64, description="connections kept open and shared by calls, at most"
    )
    pool_timeout: float = Field(
        default=30.0, gt=0, description="seconds a call waits for a free pooled connection"
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="attempts and backoff when a connection drops (operations safe to repeat)",
    )
    root_dir: str = Field(
        default=".",
        min_length=1,
        description="server directory every path is relative to (relative: to the login "
        "directory); paths cannot leave it",
    )
    checksum: bool = Field(
        default=False,
        description="also compare a server-side hash (HASH, XSHA256, XSHA1, XMD5, XCRC) after "
        "each transfer when the server offers one; sizes are always compared",
    )
    encoding: str = Field(default="utf-8", description="encoding of remote path names")

    @field_validator("root_dir")
    @classmethod
    def _plain_root(cls, value: str) -> str:
        if any(character in value for character in _FORBIDDEN):
            raise ValueError("must not contain NUL, CR or LF")
        return value

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> FtpSettings:
        """Settings from ``ftp://user:password@host:port/dir`` or ``ftps://...``.

        The path becomes ``root_dir``; a ``ca_file`` query parameter sets
        ``ca_file``. Keyword arguments override what the URL says.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("ftp", "ftps"):
            raise ValueError(f"an FTP URL starts with ftp:// or ftps://, not {parts.scheme!r}://")
        data: dict[str, Any] = {
            "host": parts.hostname or "",
            "port": parts.port or 21,
            "tls": parts.scheme == "ftps",
            "root_dir": unquote(parts.path) or ".",
        }
        if parts.username:
            data["user"] = unquote(parts.username)
        if parts.password is not None:
            data["password"] = unquote(parts.password)
        ca_file = parse_qs(parts.query).get("ca_file")
        if ca_file:
            data["ca_file"] = ca_file[0]
        data.update(overrides)
        return cls.model_validate(data)
