"""Database settings: a URL or its parts, SSL and pool options, and an optional read replica.

Build them from configuration (``db:`` section), directly, or fluently::

    settings = (
        DatabaseSettings.builder()
        .driver("postgresql").host("db.internal").port(5432)
        .user("svc").password("p@ss:/%").name("orders")
        .build()
    )

Every way ends in the same model validation.
"""

from __future__ import annotations

__all__ = ["DatabaseReplicaSettings", "DatabaseSettings", "SettingsBuilder"]

from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, model_validator

Driver = Literal["sqlite", "postgresql"]
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
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
#: libpq's names, sent to the driver as connection parameters.
SSL_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey")

_ModelT = TypeVar("_ModelT", bound=BaseModel)


class SettingsBuilder(Generic[_ModelT]):
    """Collects settings one call at a time; :meth:`build` validates them with the model.

    ``builder.host("db")`` sets ``host``; an unknown name raises AttributeError
    listing the settings that exist.
    """

    __slots__ = ("_model", "_values")

    def __init__(self, model: type[_ModelT]) -> None:
        self._model = model
        self._values: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Callable[[Any], SettingsBuilder[_ModelT]]:
        fields = self._model.model_fields
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise AttributeError(f"{self._model.__name__} has no setting {name!r}; known: {known}")

        def set_value(value: Any) -> SettingsBuilder[_ModelT]:
            self._values[name] = value
            return self

        return set_value

    def __repr__(self) -> str:
        return f"{self._model.__name__}.builder() with {sorted(self._values)}"

    def build(self) -> _ModelT:
        """The validated settings (pydantic's ValidationError lists every problem)."""
        return self._model.model_validate(self._values)


class _Connection(BaseModel):
    """Where to connect: either ``url`` or the parts that build one, and how (SSL)."""

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
        default_factory=dict, description="extra URL query options, e.g. application_name: svc"
    )
    sslmode: SslMode | None = Field(
        default=None, description="libpq sslmode (postgresql); verify-full checks the host name"
    )
    sslrootcert: FilePath | None = Field(
        default=None, description="CA certificate file that signs the server's (postgresql)"
    )
    sslcert: FilePath | None = Field(
        default=None, description="client certificate file; needs sslkey (postgresql)"
    )
    sslkey: FilePath | None = Field(
        default=None, description="client private key file; needs sslcert (postgresql)"
    )

    @classmethod
    def builder(cls: type[_ModelT]) -> SettingsBuilder[_ModelT]:
        """A fluent builder: ``DatabaseSettings.builder().host("db").port(5432).build()``."""
        return SettingsBuilder(cls)

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

    def ssl_options(self) -> dict[str, str]:
        """The SSL options that are set, as driver connection parameters."""
        options: dict[str, str] = {}
        for name in SSL_OPTIONS:
            value = getattr(self, name)
            if value is not None:
                options[name] = str(value)
        return options

    @model_validator(mode="after")
    def _ssl_options_are_consistent(self) -> _Connection:
        given = self.ssl_options()
        if not given:
            return self
        if self.family == "sqlite":
            raise ValueError(f"{', '.join(given)}: SSL options apply to postgresql only")
        if (self.sslcert is None) != (self.sslkey is None):
            raise ValueError("sslcert and sslkey go together: set both or neither")
        if self.sslmode == "disable" and len(given) > 1:
            files = ", ".join(name for name in given if name != "sslmode")
            raise ValueError(f"sslmode 'disable' contradicts {files}")
        in_query = set(self.query) | _url_query_keys(self.url)
        twice = sorted(in_query & set(given))
        if twice:
            raise ValueError(
                f"{', '.join(twice)} given both as a setting and in the URL query; keep one"
            )
        return self


class DatabaseReplicaSettings(_Connection):
    """A read replica: ``session(readonly=True)`` goes here.

    Pool and timeout options come from the primary, and so does each SSL option
    the replica leaves unset.
    """


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

    def replica_ssl_options(self) -> dict[str, str]:
        """The replica's SSL options: its own, then the primary's for those it leaves unset."""
        if self.replica is None:
            return {}
        if self.replica.family == "sqlite":
            return self.replica.ssl_options()
        own_query = set(self.replica.query) | _url_query_keys(self.replica.url)
        inherited = {k: v for k, v in self.ssl_options().items() if k not in own_query}
        return {**inherited, **self.replica.ssl_options()}


def _url_query_keys(url: SecretStr | None) -> set[str]:
    if url is None:
        return set()
    return {key for key, _ in parse_qsl(urlsplit(url.get_secret_value()).query)}


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
