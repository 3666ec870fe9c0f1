"""Redis connection settings: a URL or its parts, TLS, pool and timeouts; cache defaults."""

from __future__ import annotations

__all__ = ["CacheSettings", "RedisSettings"]

from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class CacheSettings(BaseModel):
    """The ``redis.cache`` section: defaults of :class:`~dtpyfw.redis.Cache`."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(
        default="cache", min_length=1, description="prefix of every cache key (<namespace>:...)"
    )
    version: str = Field(
        default="1", description="part of every key: change it to invalidate the whole cache"
    )
    default_ttl: float = Field(default=300.0, gt=0, description="seconds a value lives")
    compress_min_size: int | None = Field(
        default=1024,
        ge=0,
        description="zlib-compress values of at least this many bytes; null never compresses",
    )
    lock_ttl: float = Field(
        default=10.0,
        gt=0,
        description="seconds the short Redis lock against stampedes lives while one "
        "process computes a missing value",
    )
    on_error: Literal["call", "raise"] = Field(
        default="call",
        description="when Redis fails: 'call' the function uncached (logged once per "
        "outage), or 'raise' CacheError",
    )
    retry_after: float = Field(
        default=5.0,
        ge=0,
        description="after a Redis failure, seconds the cache is bypassed before trying again",
    )


class RedisSettings(BaseModel):
    """The ``redis`` section."""

    model_config = ConfigDict(extra="forbid")

    url: SecretStr | None = Field(
        default=None, description="redis:// or rediss:// URL; when set, the parts below are ignored"
    )
    host: str = Field(default="127.0.0.1", description="server host")
    port: int = Field(default=6379, ge=1, le=65535, description="server port")
    db: int = Field(default=0, ge=0, description="logical database number")
    username: str | None = Field(default=None, description="ACL user name")
    password: SecretStr | None = Field(default=None, description="password; URL-escaped for you")
    tls: bool = Field(default=False, description="use TLS (rediss://)")
    tls_verify: bool = Field(default=True, description="verify the server certificate")
    tls_ca_file: str | None = Field(default=None, description="CA bundle to trust for TLS")
    max_connections: int = Field(default=50, ge=1, description="pool size")
    socket_timeout: float = Field(default=5.0, gt=0, description="seconds per command")
    connect_timeout: float = Field(default=2.0, gt=0, description="seconds to connect")
    socket_keepalive: bool = Field(default=True, description="TCP keepalive on connections")
    health_check_interval: int = Field(
        default=30, ge=0, description="seconds between pings of an idle pooled connection"
    )
    retries: int = Field(default=3, ge=0, description="retries on connection errors, with backoff")
    cache: CacheSettings = Field(
        default_factory=CacheSettings, description="defaults of the cache decorator"
    )

    def connection_url(self) -> str:
        """The URL to hand redis-py (``url`` as given, or built from the parts)."""
        if self.url is not None:
            return self.url.get_secret_value()
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.password is not None:
            user = quote(self.username or "", safe="")
            auth = f"{user}:{quote(self.password.get_secret_value(), safe='')}@"
        elif self.username is not None:
            auth = f"{quote(self.username, safe='')}@"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"
