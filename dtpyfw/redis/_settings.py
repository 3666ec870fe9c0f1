"""Redis connection settings: a URL or its parts, TLS, pool and timeouts."""

from __future__ import annotations

__all__ = ["RedisSettings"]

from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr


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
    health_check_interval: int = Field(
        default=30, ge=0, description="seconds between pings of an idle pooled connection"
    )
    retries: int = Field(default=3, ge=0, description="retries on connection errors, with backoff")

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
