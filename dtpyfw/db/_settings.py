"""Database settings: a URL or its parts, pool options, and an optional read replica."""

from __future__ import annotations

__all__ = ["DatabaseReplicaSettings", "DatabaseSettings"]

from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Driver = Literal["sqlite", "postgresql"]
_ASYNC_DRIVER = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_SYNC_DRIVER = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}
_SCHEME_ALIASES = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "postgresql+psycopg": "postgresql",
    "postgresql+psycopg2": "postgresql",
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
}


class _Connection(BaseModel):
    """Where to connect: either ``url`` or the parts that build one."""

    model_config = ConfigDict(extra="forbid")

    url: SecretStr | None = Field(
        default=None,
        description="full database URL; when set, the parts below are ignored. "
        "postgres://, postgresql:// and sqlite:/// are accepted",
    )
    driver: Driver = Field(default="sqlite", description="sqlite (embedded) or postgresql")
    host: str = Field(default="127.0.0.1", description="server host (postgresql)")
    port: int = Field(default=5432, ge=1, le=65535, description="server port (postgresql)")
    user: str | None = Field(default=None, description="user name (postgresql)")
    password: SecretStr | None = Field(default=None, description="password; URL-escaped for you")
    name: str = Field(
        default=".var/dtpyfw.sqlite3",
        description="database name (postgresql) or file path (sqlite; ':memory:' for RAM)",
    )
    query: dict[str, str] = Field(
        default_factory=dict, description="extra URL query options, e.g. sslmode: require"
    )

    def url_for(self, *, asynchronous: bool) -> str:
        """The SQLAlchemy URL for the sync or async engine (same driver family)."""
        if self.url is not None:
            return _normalise_url(self.url.get_secret_value(), asynchronous=asynchronous)
        scheme = (_ASYNC_DRIVER if asynchronous else _SYNC_DRIVER)[self.driver]
        query = f"?{urlencode(sorted(self.query.items()))}" if self.query else ""
        if self.driver == "sqlite":
            return f"{scheme}:///{self.name}{query}"
        auth = ""
        if self.user is not None:
            auth = quote(self.user, safe="")
            if self.password is not None:
                auth += ":" + quote(self.password.get_secret_value(), safe="")
            auth += "@"
        return f"{scheme}://{auth}{self.host}:{self.port}/{quote(self.name, safe='')}{query}"

    @property
    def family(self) -> Driver:
        """``sqlite`` or ``postgresql``, from the URL when one is given."""
        if self.url is not None:
            scheme = self.url.get_secret_value().split(":", 1)[0].lower()
            return "sqlite" if _SCHEME_ALIASES.get(scheme) == "sqlite" else "postgresql"
        return self.driver

    def sqlite_path(self) -> Path | None:
        """The database file for sqlite (None for ``:memory:`` or a server)."""
        if self.family != "sqlite":
            return None
        raw = self.url_for(asynchronous=False).split(":///", 1)[1].split("?", 1)[0]
        return None if raw in ("", ":memory:") else Path(raw)


class DatabaseReplicaSettings(_Connection):
    """A read replica: ``session(readonly=True)`` goes here."""


class DatabaseSettings(_Connection):
    """The ``db`` section. Defaults give the embedded SQLite database."""

    pool_size: int = Field(default=5, ge=1, description="connections kept open (postgresql)")
    max_overflow: int = Field(default=10, ge=0, description="extra connections under load")
    pool_timeout: float = Field(default=30.0, gt=0, description="seconds to wait for a connection")
    pool_recycle: int = Field(
        default=1800, ge=-1, description="seconds before a connection is renewed"
    )
    pool_pre_ping: bool = Field(default=True, description="test connections on checkout")
    echo: bool = Field(default=False, description="log every SQL statement")
    statement_timeout: float | None = Field(
        default=None, gt=0, description="seconds before the server cancels a statement (postgresql)"
    )
    health_timeout: float = Field(default=2.0, gt=0, description="seconds for the SELECT 1 ping")
    replica: DatabaseReplicaSettings | None = Field(
        default=None, description="optional read replica (url or parts)"
    )

    @model_validator(mode="after")
    def _sqlite_has_no_pool_server_options(self) -> DatabaseSettings:
        if self.family == "sqlite" and self.statement_timeout is not None:
            raise ValueError("statement_timeout applies to postgresql only")
        return self


def _normalise_url(url: str, *, asynchronous: bool) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("database url must look like scheme://...")
    family = _SCHEME_ALIASES.get(scheme.lower())
    if family is None:
        known = ", ".join(sorted(_SCHEME_ALIASES))
        raise ValueError(f"unsupported database url scheme {scheme!r}; expected one of {known}")
    table = _ASYNC_DRIVER if asynchronous else _SYNC_DRIVER
    return f"{table[family]}://{rest}"
