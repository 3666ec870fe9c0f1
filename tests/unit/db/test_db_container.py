"""DatabaseContainer: request-scoped sessions, health checks and engine Resources on SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.pool import QueuePool

from dtpyfw.core.errors import DatabaseError, ScopeError
from dtpyfw.core.scope import ascope, scope
from dtpyfw.db import (
    AsyncDatabase,
    Database,
    DatabaseContainer,
    DatabaseSettings,
    ModelBase,
    acreate_all,
    create_all,
)


class Task(ModelBase):
    """A row written through scoped sessions."""

    __tablename__ = "unit_db_tasks"
    title: Mapped[str] = mapped_column(unique=True)


class BoomError(Exception):
    """An application error that ends a scope."""


def _checked_out(engine: Engine | AsyncEngine) -> int:
    """Connections the engine's pool has lent out and not yet taken back."""
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


@pytest.fixture
def settings(tmp_path: Path) -> DatabaseSettings:
    """SQLite settings in the test's temporary directory."""
    return DatabaseSettings(name=str(tmp_path / "container.sqlite3"), health_timeout=5)


@pytest.fixture
def container(settings: DatabaseSettings) -> Iterator[Any]:
    """A DatabaseContainer with sync tables created; its sync resources shut down after."""
    container: Any = DatabaseContainer(settings=settings)
    create_all(container.database())
    yield container
    assert container.shutdown_resources() is None


@pytest.fixture
async def acontainer(settings: DatabaseSettings) -> AsyncIterator[Any]:
    """A DatabaseContainer with tables created through the async database."""
    container: Any = DatabaseContainer(settings=settings)
    await acreate_all(await container.async_database())
    yield container
    await container.shutdown_resources()


def _titles(container: Any) -> list[str]:
    database: Database = container.database()
    with database.session() as session:
        return list(session.scalars(select(Task.title).order_by(Task.title)))


async def _scoped_session(container: Any) -> AsyncSession:
    # The scoped provider hands out a future, so one request's awaits share it.
    session: AsyncSession = await container.async_session()
    return session


def test_one_session_per_scope(container: Any) -> None:
    """Within a scope the session is shared; another scope gets another session."""
    with scope():
        first = container.session()
        assert isinstance(first, Session)
        assert container.session() is first
    with scope():
        assert container.session() is not first


def test_scope_end_commits_and_closes_the_session(container: Any) -> None:
    """A scope that ends normally commits its session and returns the connection."""
    with scope():
        container.session().add(Task(title="done"))
    assert _checked_out(container.engine()) == 0
    assert _titles(container) == ["done"]


def test_exception_in_scope_rolls_back(container: Any) -> None:
    """A scope that ends with an exception rolls its session back; the error propagates."""

    def request() -> None:
        with scope():
            session = container.session()
            session.add(Task(title="lost"))
            session.flush()
            raise BoomError

    with pytest.raises(BoomError):
        request()
    assert _checked_out(container.engine()) == 0
    assert _titles(container) == []


def test_session_outside_a_scope_is_a_scope_error(container: Any) -> None:
    """Resolving a scoped session with no open scope raises ScopeError."""
    with pytest.raises(ScopeError, match=r"container\.scope\(\)"):
        container.session()


def test_database_singletons_share_the_engine_resources(container: Any) -> None:
    """database is one Database on the engine Resource, without replica by default."""
    database = container.database()
    assert isinstance(database, Database)
    assert container.database() is database
    assert database.engine is container.engine()
    assert database.replica_engine is None
    assert container.replica_engine() is None


def test_replica_resource_backs_readonly_sessions(tmp_path: Path) -> None:
    """With settings.replica, database routes readonly sessions to replica_engine."""
    settings = DatabaseSettings.model_validate(
        {"name": str(tmp_path / "p.sqlite3"), "replica": {"name": str(tmp_path / "r.sqlite3")}}
    )
    container = DatabaseContainer(settings=settings)
    try:
        replica = container.replica_engine()
        assert isinstance(replica, Engine)
        with container.database().session(readonly=True) as session:
            assert session.get_bind() is replica
    finally:
        container.shutdown_resources()


def test_health_check_pings_when_resolved(container: Any) -> None:
    """Resolving health_check runs the ping and returns None."""
    assert container.health_check() is None


def test_health_check_uses_the_settings_timeout(tmp_path: Path) -> None:
    """A database that does not answer within health_timeout fails health_check."""
    release = threading.Event()

    def hanging_connect() -> sqlite3.Connection:
        release.wait()
        return sqlite3.connect(":memory:")

    engine = create_engine("sqlite://", creator=hanging_connect)
    settings = DatabaseSettings(name=str(tmp_path / "unused.sqlite3"), health_timeout=0.05)
    container = DatabaseContainer(settings=settings)
    try:
        with (
            container.engine.override(engine),
            pytest.raises(DatabaseError, match=r"within 0\.05s"),
        ):
            container.health_check()
    finally:
        release.set()
        for thread in threading.enumerate():
            if thread.name == "dtpyfw-db-ping":
                thread.join(5)
        engine.dispose()
        container.shutdown_resources()


def test_shutdown_resources_disposes_the_sync_engine(settings: DatabaseSettings) -> None:
    """container.shutdown_resources() disposes the engine it created."""
    container = DatabaseContainer(settings=settings)
    engine = container.engine()
    disposed: list[Engine] = []
    event.listen(engine, "engine_disposed", disposed.append)
    with engine.connect():
        pass
    assert container.shutdown_resources() is None
    assert disposed == [engine]
    assert not container.engine.initialized


async def test_async_session_one_per_scope(acontainer: Any) -> None:
    """Within an async scope the session is shared; another scope gets another one."""
    async with ascope():
        first = await _scoped_session(acontainer)
        assert isinstance(first, AsyncSession)
        assert await _scoped_session(acontainer) is first
    async with ascope():
        assert await _scoped_session(acontainer) is not first


async def test_async_scope_end_commits(acontainer: Any) -> None:
    """An async scope that ends normally commits its session."""
    async with ascope():
        (await _scoped_session(acontainer)).add(Task(title="done"))
    database: AsyncDatabase = await acontainer.async_database()
    async with database.session() as session:
        assert (await session.scalars(select(Task.title))).all() == ["done"]
    assert _checked_out(database.engine) == 0


async def test_async_exception_in_scope_rolls_back(acontainer: Any) -> None:
    """An async scope that ends with an exception rolls its session back."""

    async def request() -> None:
        async with ascope():
            session = await _scoped_session(acontainer)
            session.add(Task(title="lost"))
            await session.flush()
            raise BoomError

    with pytest.raises(BoomError):
        await request()
    database: AsyncDatabase = await acontainer.async_database()
    async with database.session() as session:
        assert (await session.scalars(select(Task.title))).all() == []


async def test_async_session_outside_an_async_scope_is_a_scope_error(acontainer: Any) -> None:
    """async_session needs an async scope: outside any scope, or in a sync one, ScopeError."""
    with pytest.raises(ScopeError):
        acontainer.async_session()
    with scope(), pytest.raises(ScopeError, match=r"container\.ascope\(\)"):
        acontainer.async_session()


async def test_ahealth_check_returns_an_awaitable_ping(acontainer: Any) -> None:
    """ahealth_check resolves to an awaitable that pings and returns None."""
    check = acontainer.ahealth_check()
    assert asyncio.isfuture(check) or asyncio.iscoroutine(check)
    assert await check is None


async def test_async_shutdown_resources_disposes_every_engine(
    settings: DatabaseSettings,
) -> None:
    """await container.shutdown_resources() disposes the sync and the async engine."""
    container: Any = DatabaseContainer(settings=settings)
    engine = container.engine()
    async_engine = await container.async_engine()
    disposed: list[Engine] = []
    event.listen(engine, "engine_disposed", disposed.append)
    event.listen(async_engine.sync_engine, "engine_disposed", disposed.append)
    async with async_engine.connect():
        pass
    await container.shutdown_resources()
    assert sorted(map(id, disposed)) == sorted([id(engine), id(async_engine.sync_engine)])
    assert not container.async_engine.initialized


async def test_read_sessions_use_the_replica(tmp_path: Path) -> None:
    """read_session / async_read_session are per-scope sessions on the replica's engines."""
    settings = DatabaseSettings.model_validate(
        {"name": str(tmp_path / "p.sqlite3"), "replica": {"name": str(tmp_path / "r.sqlite3")}}
    )
    container: Any = DatabaseContainer(settings=settings)
    try:
        with scope():
            reader = container.read_session()
            assert reader.get_bind() is container.replica_engine()
            assert container.read_session() is reader
            assert container.session().get_bind() is container.engine()
        async with ascope():
            areader: AsyncSession = await container.async_read_session()
            assert areader.bind is await container.async_replica_engine()
            assert (await container.async_session()).bind is await container.async_engine()
    finally:
        await container.shutdown_resources()


def test_read_session_without_a_replica_reads_the_primary(container: Any) -> None:
    """Without settings.replica, read_session is a second session on the primary."""
    with scope():
        container.session().add(Task(title="written"))
    with scope():
        reader = container.read_session()
        assert reader is not container.session()
        assert reader.get_bind() is container.engine()
        assert reader.scalars(select(Task.title)).all() == ["written"]
