"""SQLAlchemy engines built from :class:`~dtpyfw.db.DatabaseSettings`.

The sync and async engines of one settings object talk to the same database
with the same options:

* postgresql (psycopg 3, sync and async): the pool options, the SSL options
  (``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``) as connection
  parameters, and ``statement_timeout`` sent as a connection option so the
  server cancels long statements;
* sqlite (stdlib / aiosqlite): the database file's directory is created, and
  ``PRAGMA foreign_keys=ON`` runs on every new connection (SQLite leaves
  foreign keys unenforced otherwise). SQLAlchemy's default pool for SQLite is
  kept, so no pool option is passed.

``replica=True`` builds the engine of ``settings.replica`` instead, with the
primary's pool and timeout options, and the primary's SSL options for those the
replica leaves unset. The caller owns the engine and disposes it
(``DatabaseContainer``'s Resources do).
"""

from __future__ import annotations

__all__ = ["create_async_engine", "create_sync_engine"]

import logging
from typing import TYPE_CHECKING, Any

from dtpyfw.core._extras import require
from dtpyfw.db._settings import DatabaseReplicaSettings, DatabaseSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

_log = logging.getLogger("dtpyfw.db")


def create_sync_engine(settings: DatabaseSettings, *, replica: bool = False) -> Engine:
    """A sync engine for the primary database, or for the replica when ``replica``."""
    connection = _connection(settings, replica=replica)
    _require_drivers(connection, asynchronous=False)
    from sqlalchemy import create_engine

    url = connection.url_for(asynchronous=False)
    engine = create_engine(url, **_engine_options(settings, connection, url))
    _prepare(engine, connection)
    _log_created(engine, replica=replica, asynchronous=False)
    return engine


def create_async_engine(settings: DatabaseSettings, *, replica: bool = False) -> AsyncEngine:
    """An async engine for the primary database, or for the replica when ``replica``."""
    connection = _connection(settings, replica=replica)
    _require_drivers(connection, asynchronous=True)
    from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine

    url = connection.url_for(asynchronous=True)
    engine = sa_create_async_engine(url, **_engine_options(settings, connection, url))
    _prepare(engine.sync_engine, connection)
    _log_created(engine.sync_engine, replica=replica, asynchronous=True)
    return engine


def _connection(
    settings: DatabaseSettings, *, replica: bool
) -> DatabaseSettings | DatabaseReplicaSettings:
    if not replica:
        return settings
    if settings.replica is None:
        raise ValueError("settings.replica is not set: there is no replica engine to create")
    return settings.replica


def _require_drivers(
    connection: DatabaseSettings | DatabaseReplicaSettings, *, asynchronous: bool
) -> None:
    if connection.family == "postgresql":
        require("sqlalchemy", "postgres")
        require("psycopg", "postgres")
    else:
        require("sqlalchemy", "db")
        if asynchronous:
            require("aiosqlite", "db")
    if asynchronous:
        require("greenlet", "db")  # SQLAlchemy's asyncio layer runs on greenlets


def _engine_options(
    settings: DatabaseSettings, connection: DatabaseSettings | DatabaseReplicaSettings, url: str
) -> dict[str, Any]:
    options: dict[str, Any] = {"echo": settings.echo}
    if connection.family == "sqlite":
        return options
    options.update(
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        pool_pre_ping=settings.pool_pre_ping,
    )
    connect_args: dict[str, Any] = (
        settings.replica_ssl_options() if connection is settings.replica else settings.ssl_options()
    )
    if settings.statement_timeout is not None:
        milliseconds = max(1, round(settings.statement_timeout * 1000))
        connect_args["options"] = _with_url_options(url, f"-c statement_timeout={milliseconds}")
    if connect_args:
        options["connect_args"] = connect_args
    return options


def _with_url_options(url: str, option: str) -> str:
    """``option`` after any ``options`` the URL's query already carries (connect_args win)."""
    from sqlalchemy.engine import make_url

    existing = make_url(url).query.get("options")
    return f"{existing} {option}" if isinstance(existing, str) and existing else option


def _prepare(engine: Engine, connection: DatabaseSettings | DatabaseReplicaSettings) -> None:
    if connection.family != "sqlite":
        return
    path = connection.sqlite_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    from sqlalchemy import event

    event.listen(engine, "connect", _enable_sqlite_foreign_keys)


def _enable_sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _log_created(engine: Engine, *, replica: bool, asynchronous: bool) -> None:
    _log.debug(
        "database engine created",
        extra={
            # No query: it may carry credentials that hide_password does not mask.
            "db_url": engine.url.set(query={}).render_as_string(hide_password=True),
            "db_role": "replica" if replica else "primary",
            "db_async": asynchronous,
        },
    )
