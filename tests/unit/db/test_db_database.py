"""Database and AsyncDatabase on SQLite: session lifecycle, error mapping, routing and ping."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import CheckConstraint, ForeignKey, create_engine, func, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.pool import QueuePool

from dtpyfw.core.errors import DatabaseError, IntegrityError
from dtpyfw.db import (
    AsyncDatabase,
    Database,
    DatabaseSettings,
    ModelBase,
    acreate_all,
    create_all,
    create_async_engine,
    create_sync_engine,
)


class Account(ModelBase):
    """A row with a unique and a check constraint."""

    __tablename__ = "unit_db_accounts"
    email: Mapped[str] = mapped_column(unique=True)
    balance: Mapped[int] = mapped_column(CheckConstraint("balance >= 0", name="balance"), default=0)


class Entry(ModelBase):
    """A row with a foreign key to Account."""

    __tablename__ = "unit_db_entries"
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("unit_db_accounts.id"))


class BoomError(Exception):
    """An application error raised inside a session block."""


def _checked_out(engine: Engine | AsyncEngine) -> int:
    """Connections the engine's pool has lent out and not yet taken back."""
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


@pytest.fixture
def settings(tmp_path: Path) -> DatabaseSettings:
    """Settings for a SQLite file in the test's temporary directory."""
    return DatabaseSettings(name=str(tmp_path / "primary.sqlite3"))


@pytest.fixture
def database(settings: DatabaseSettings) -> Iterator[Database]:
    """A sync Database with the model tables created."""
    engine = create_sync_engine(settings)
    database = Database(engine)
    create_all(database)
    yield database
    engine.dispose()


@pytest.fixture
async def adatabase(settings: DatabaseSettings) -> AsyncIterator[AsyncDatabase]:
    """An async Database with the model tables created."""
    engine = create_async_engine(settings)
    database = AsyncDatabase(engine)
    await acreate_all(database)
    yield database
    await engine.dispose()


def _emails(database: Database) -> list[str]:
    with database.session() as session:
        return list(session.scalars(select(Account.email).order_by(Account.email)))


async def _aemails(database: AsyncDatabase) -> list[str]:
    async with database.session() as session:
        return list(await session.scalars(select(Account.email).order_by(Account.email)))


def test_session_commits_when_the_block_succeeds(database: Database) -> None:
    """Rows added in a session are visible to the next session, and the session is closed."""
    with database.session() as session:
        account = Account(email="a@example.com")
        session.add(account)
    assert inspect(account).detached
    assert _checked_out(database.engine) == 0
    assert _emails(database) == ["a@example.com"]


def test_session_rolls_back_and_reraises_application_errors(database: Database) -> None:
    """An application exception rolls the session back and propagates unchanged."""
    error = BoomError("no")

    def work() -> None:
        with database.session() as session:
            session.add(Account(email="a@example.com"))
            session.flush()
            raise error

    with pytest.raises(BoomError) as info:
        work()
    assert info.value is error
    assert _checked_out(database.engine) == 0
    assert _emails(database) == []


def test_unique_violation_is_an_integrity_error(database: Database) -> None:
    """A duplicate key raises IntegrityError chained to SQLAlchemy's, without the values."""
    with database.session() as session:
        session.add(Account(email="taken@example.com"))
    with pytest.raises(IntegrityError) as info, database.session() as session:
        session.add(Account(email="taken@example.com"))
    assert isinstance(info.value, DatabaseError)
    assert isinstance(info.value.__cause__, sqlalchemy.exc.IntegrityError)
    assert "UNIQUE" in str(info.value)
    assert "taken@example.com" not in str(info.value)
    assert _checked_out(database.engine) == 0
    assert _emails(database) == ["taken@example.com"]


def test_foreign_key_violation_is_an_integrity_error(database: Database) -> None:
    """A dangling foreign key is refused (SQLite enforces them) as IntegrityError."""
    with pytest.raises(IntegrityError, match="FOREIGN KEY"), database.session() as session:
        session.add(Entry(account_id=uuid.uuid4()))


def test_check_violation_is_an_integrity_error(database: Database) -> None:
    """A failed CHECK constraint raises IntegrityError."""
    with pytest.raises(IntegrityError, match="CHECK"), database.session() as session:
        session.add(Account(email="a@example.com", balance=-1))


def test_other_driver_errors_are_database_errors(database: Database) -> None:
    """A driver error that is not a constraint violation is a DatabaseError only."""
    with pytest.raises(DatabaseError) as info, database.session() as session:
        session.execute(text("SELECT * FROM no_such_table"))
    assert not isinstance(info.value, IntegrityError)
    assert isinstance(info.value.__cause__, sqlalchemy.exc.OperationalError)
    assert "no such table" in str(info.value)


def test_sqlalchemy_usage_errors_pass_through(database: Database) -> None:
    """NoResultFound is an answer, not a database failure: it is not translated."""
    with pytest.raises(NoResultFound), database.session() as session:
        session.execute(select(Account)).scalar_one()


async def test_async_session_commits_when_the_block_succeeds(adatabase: AsyncDatabase) -> None:
    """Async: rows added are visible to the next session, and the session is closed."""
    async with adatabase.session() as session:
        account = Account(email="a@example.com")
        session.add(account)
    assert inspect(account).detached
    assert _checked_out(adatabase.engine) == 0
    assert await _aemails(adatabase) == ["a@example.com"]


async def test_async_session_rolls_back_on_exception(adatabase: AsyncDatabase) -> None:
    """Async: an application exception rolls back and propagates unchanged."""

    async def work() -> None:
        async with adatabase.session() as session:
            session.add(Account(email="a@example.com"))
            await session.flush()
            raise BoomError

    with pytest.raises(BoomError):
        await work()
    assert _checked_out(adatabase.engine) == 0
    assert await _aemails(adatabase) == []


async def test_async_unique_violation_is_an_integrity_error(adatabase: AsyncDatabase) -> None:
    """Async: a duplicate key raises IntegrityError chained to SQLAlchemy's."""
    async with adatabase.session() as session:
        session.add(Account(email="taken@example.com"))
    with pytest.raises(IntegrityError) as info:
        async with adatabase.session() as session:
            session.add(Account(email="taken@example.com"))
    assert isinstance(info.value.__cause__, sqlalchemy.exc.IntegrityError)
    assert _checked_out(adatabase.engine) == 0


async def test_async_foreign_key_violation_is_an_integrity_error(
    adatabase: AsyncDatabase,
) -> None:
    """Async: aiosqlite connections enforce foreign keys too."""
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        async with adatabase.session() as session:
            session.add(Entry(account_id=uuid.uuid4()))


def test_readonly_sessions_read_from_the_replica(tmp_path: Path) -> None:
    """session(readonly=True) is bound to the replica engine; session() to the primary."""
    settings = DatabaseSettings.model_validate(
        {"name": str(tmp_path / "p.sqlite3"), "replica": {"name": str(tmp_path / "r.sqlite3")}}
    )
    primary = create_sync_engine(settings)
    replica = create_sync_engine(settings, replica=True)
    try:
        database = Database(primary, replica_engine=replica)
        assert database.replica_engine is replica
        ModelBase.metadata.create_all(replica)
        create_all(database)
        with Database(replica).session() as session:
            session.add(Account(email="replica@example.com"))
        with database.session() as session:
            assert session.get_bind() is primary
            session.add(Account(email="primary@example.com"))
        with database.session(readonly=True) as session:
            assert session.get_bind() is replica
            assert session.scalars(select(Account.email)).all() == ["replica@example.com"]
    finally:
        primary.dispose()
        replica.dispose()


def test_readonly_sessions_use_the_primary_without_replica(database: Database) -> None:
    """Without a replica, readonly sessions go to the primary engine."""
    assert database.replica_engine is None
    with database.session(readonly=True) as session:
        assert session.get_bind() is database.engine


async def test_async_readonly_sessions_read_from_the_replica(tmp_path: Path) -> None:
    """Async: session(readonly=True) is bound to the replica engine."""
    settings = DatabaseSettings.model_validate(
        {"name": str(tmp_path / "p.sqlite3"), "replica": {"name": str(tmp_path / "r.sqlite3")}}
    )
    primary = create_async_engine(settings)
    replica = create_async_engine(settings, replica=True)
    try:
        database = AsyncDatabase(primary, replica_engine=replica)
        await acreate_all(AsyncDatabase(replica))
        async with AsyncDatabase(replica).session() as session:
            session.add(Account(email="replica@example.com"))
        async with database.session(readonly=True) as session:
            assert session.get_bind() is replica.sync_engine
            rows = await session.scalars(select(func.count()).select_from(Account))
            assert rows.one() == 1
        async with database.session() as session:
            assert session.get_bind() is primary.sync_engine
    finally:
        await primary.dispose()
        await replica.dispose()


def test_ping_succeeds_on_a_reachable_database(database: Database) -> None:
    """ping() returns quietly when SELECT 1 answers."""
    database.ping(5)


async def test_aping_succeeds_on_a_reachable_database(adatabase: AsyncDatabase) -> None:
    """aping() returns quietly when SELECT 1 answers."""
    await adatabase.aping(5)


def test_ping_failure_is_a_database_error_naming_the_engine(
    database: Database, tmp_path: Path
) -> None:
    """A replica that cannot be opened fails the ping with a DatabaseError naming it."""
    (tmp_path / "not-a-dir").write_text("")
    broken = create_engine(f"sqlite:///{tmp_path / 'not-a-dir' / 'x.sqlite3'}")
    try:
        with pytest.raises(DatabaseError, match="replica database ping failed") as info:
            Database(database.engine, replica_engine=broken).ping(5)
        assert isinstance(info.value.__cause__, sqlalchemy.exc.OperationalError)
    finally:
        broken.dispose()


def test_ping_gives_up_after_the_timeout() -> None:
    """A database that never answers fails the ping once the timeout has passed."""
    release = threading.Event()

    def hanging_connect() -> sqlite3.Connection:
        release.wait()
        return sqlite3.connect(":memory:")

    engine = create_engine("sqlite://", creator=hanging_connect)
    try:
        with pytest.raises(DatabaseError, match=r"primary database did not answer .* 0\.05s"):
            Database(engine).ping(0.05)
    finally:
        release.set()
        for thread in threading.enumerate():
            if thread.name == "dtpyfw-db-ping":
                thread.join(5)
        engine.dispose()


async def test_aping_gives_up_after_the_timeout() -> None:
    """Async: a database that never answers fails the ping once the timeout has passed."""

    async def hanging_connect() -> Any:
        await asyncio.Event().wait()

    engine = sa_create_async_engine("sqlite+aiosqlite://", async_creator=hanging_connect)
    try:
        with pytest.raises(DatabaseError, match=r"primary database did not answer .* 0\.05s"):
            await AsyncDatabase(engine).aping(0.05)
    finally:
        await engine.dispose()


def test_repr_masks_the_password() -> None:
    """The database's repr shows its engines without the password."""
    engine = create_engine("postgresql+psycopg://svc:hunter2@db.internal/orders")
    try:
        text_ = repr(Database(engine))
        assert "hunter2" not in text_
        assert text_.startswith("Database(engine=Engine(")
    finally:
        engine.dispose()
