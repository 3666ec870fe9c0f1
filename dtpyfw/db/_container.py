"""The database subsystem as a dependency-injector container.

``engine`` / ``replica_engine`` are sync-generator Resources and
``async_engine`` / ``async_replica_engine`` async-generator Resources: each
creates its engine on first use and disposes it in
``container.shutdown_resources()`` (which returns an awaitable once an async
Resource was initialised). A replica Resource provides None when
``settings.replica`` is not set.

``session`` / ``async_session`` are request-scoped (:class:`~dtpyfw.core.scope.Scoped`):
one session per ``container.scope()`` / ``container.ascope()``, committed when
the scope ends normally, rolled back when it ends with an exception, always
closed. ``read_session`` / ``async_read_session`` are their read-only
counterparts: another session per scope, on the replica when one is
configured (on the primary otherwise). ``health_check`` pings when resolved and raises
:class:`~dtpyfw.core.errors.DatabaseError` on failure; ``ahealth_check``
returns an awaitable that does the same.
"""

from __future__ import annotations

__all__ = ["DatabaseContainer"]

import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from dtpyfw.core.scope import Scoped
from dtpyfw.db._database import AsyncDatabase, Database
from dtpyfw.db._engine import create_async_engine, create_sync_engine
from dtpyfw.db._settings import DatabaseSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
    from sqlalchemy.orm import Session

_log = logging.getLogger("dtpyfw.db")


def _engine(settings: DatabaseSettings) -> Iterator[Engine]:
    """Yield the primary sync engine; dispose it at shutdown."""
    engine = create_sync_engine(settings)
    try:
        yield engine
    finally:
        _dispose(engine)


def _replica_engine(settings: DatabaseSettings) -> Iterator[Engine | None]:
    """Yield the replica's sync engine (None without a replica); dispose it at shutdown."""
    if settings.replica is None:
        yield None
        return
    engine = create_sync_engine(settings, replica=True)
    try:
        yield engine
    finally:
        _dispose(engine)


async def _async_engine(settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    """Yield the primary async engine; dispose it at shutdown."""
    engine = create_async_engine(settings)
    try:
        yield engine
    finally:
        await _adispose(engine)


async def _async_replica_engine(settings: DatabaseSettings) -> AsyncIterator[AsyncEngine | None]:
    """Yield the replica's async engine (None without a replica); dispose it at shutdown."""
    if settings.replica is None:
        yield None
        return
    engine = create_async_engine(settings, replica=True)
    try:
        yield engine
    finally:
        await _adispose(engine)


def _session(database: Database) -> Iterator[Session]:
    """One session for the request scope; the scope's exception rolls it back."""
    # Database.session()'s own steps, without a context manager inside the generator.
    session = database._open(False)
    try:
        yield session
    except BaseException as exc:
        database._end(session, exc)
        raise
    database._end(session, None)


async def _async_session(database: AsyncDatabase) -> AsyncIterator[AsyncSession]:
    """Async twin of :func:`_session`."""
    session = database._open(False)
    try:
        yield session
    except BaseException as exc:
        await database._end(session, exc)
        raise
    await database._end(session, None)


def _read_session(database: Database) -> Iterator[Session]:
    """One replica session for the request scope (the primary without a replica)."""
    with database.session(readonly=True) as session:
        yield session


async def _async_read_session(database: AsyncDatabase) -> AsyncIterator[AsyncSession]:
    """Async twin of :func:`_read_session`."""
    async with database.session(readonly=True) as session:
        yield session


def _health_check(database: Database, settings: DatabaseSettings) -> None:
    """Ping every engine within ``settings.health_timeout``; raise DatabaseError otherwise."""
    database.ping(settings.health_timeout)


async def _ahealth_check(database: AsyncDatabase, settings: DatabaseSettings) -> None:
    """Async twin of :func:`_health_check`."""
    await database.aping(settings.health_timeout)


class DatabaseContainer(containers.DeclarativeContainer):
    """Engines, databases, request-scoped sessions and health checks; provide ``settings``."""

    settings = providers.Dependency(instance_of=DatabaseSettings)

    engine = providers.Resource(_engine, settings)
    replica_engine = providers.Resource(_replica_engine, settings)
    async_engine = providers.Resource(_async_engine, settings)
    async_replica_engine = providers.Resource(_async_replica_engine, settings)

    database = providers.Singleton(Database, engine=engine, replica_engine=replica_engine)
    async_database = providers.Singleton(
        AsyncDatabase, engine=async_engine, replica_engine=async_replica_engine
    )

    session = Scoped(_session, database)
    async_session = Scoped(_async_session, async_database)
    read_session = Scoped(_read_session, database)
    async_read_session = Scoped(_async_read_session, async_database)

    health_check = providers.Callable(_health_check, database, settings)
    ahealth_check = providers.Callable(_ahealth_check, async_database, settings)


def _dispose(engine: Engine) -> None:
    engine.dispose()
    _log.debug("database engine disposed", extra={"db_dialect": engine.dialect.name})


async def _adispose(engine: AsyncEngine) -> None:
    await engine.dispose()
    _log.debug("database engine disposed", extra={"db_dialect": engine.dialect.name})
