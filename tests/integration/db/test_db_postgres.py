"""Database, AsyncDatabase and ModelBase against a real PostgreSQL server."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
import sqlalchemy
from psycopg import sql
from sqlalchemy import ForeignKey, inspect, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
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

# Every character that means something in a URL.
AWKWARD_PASSWORD = "p@ss:w/rd%20#?"


class Customer(ModelBase):
    """A row with a unique column."""

    __tablename__ = "it_db_customers"
    email: Mapped[str] = mapped_column(unique=True)


class Order(ModelBase):
    """A row with a foreign key to Customer."""

    __tablename__ = "it_db_orders"
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("it_db_customers.id"))


TABLES = [Customer.__table__, Order.__table__]


class BoomError(Exception):
    """An application error raised inside a session block."""


def _checked_out(engine: Engine | AsyncEngine) -> int:
    """Connections the engine's pool has lent out and not yet taken back."""
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


@pytest.fixture
def database(postgres_url: str) -> Iterator[Database]:
    """A sync Database on a fresh PostgreSQL database with the model tables created."""
    engine = create_sync_engine(DatabaseSettings(url=postgres_url))
    database = Database(engine)
    with engine.begin() as connection:
        ModelBase.metadata.create_all(connection, tables=TABLES)
    yield database
    engine.dispose()


@pytest.fixture
async def adatabase(postgres_url: str) -> AsyncIterator[AsyncDatabase]:
    """An async Database on a fresh PostgreSQL database with the model tables created."""
    engine = create_async_engine(DatabaseSettings(url=postgres_url))
    database = AsyncDatabase(engine)
    async with engine.begin() as connection:
        await connection.run_sync(ModelBase.metadata.create_all, tables=TABLES)
    yield database
    await engine.dispose()


@pytest.fixture
def awkward_role(postgres_url: str) -> Iterator[str]:
    """A login role whose password holds URL delimiters; dropped after the test."""
    admin_dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    role = f"dtpyfw_t_role_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(AWKWARD_PASSWORD)
            )
        )
    try:
        yield role
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _emails(database: Database) -> list[str]:
    with database.session() as session:
        return list(session.scalars(select(Customer.email).order_by(Customer.email)))


async def _aemails(database: AsyncDatabase) -> list[str]:
    async with database.session() as session:
        return list(await session.scalars(select(Customer.email).order_by(Customer.email)))


def test_session_commits_and_rolls_back(database: Database) -> None:
    """A successful block commits; a failing one rolls back and re-raises unchanged."""
    with database.session() as session:
        session.add(Customer(email="kept@example.com"))

    def failing() -> None:
        with database.session() as session:
            session.add(Customer(email="lost@example.com"))
            session.flush()
            raise BoomError

    with pytest.raises(BoomError):
        failing()
    assert _emails(database) == ["kept@example.com"]
    assert _checked_out(database.engine) == 0


async def test_async_session_commits_and_rolls_back(adatabase: AsyncDatabase) -> None:
    """Async: a successful block commits; a failing one rolls back and re-raises unchanged."""
    async with adatabase.session() as session:
        session.add(Customer(email="kept@example.com"))

    async def failing() -> None:
        async with adatabase.session() as session:
            session.add(Customer(email="lost@example.com"))
            await session.flush()
            raise BoomError

    with pytest.raises(BoomError):
        await failing()
    assert await _aemails(adatabase) == ["kept@example.com"]
    assert _checked_out(adatabase.engine) == 0


def test_unique_and_foreign_key_violations_are_integrity_errors(database: Database) -> None:
    """Duplicate keys and dangling references raise IntegrityError chained to the driver's."""
    with database.session() as session:
        session.add(Customer(email="taken@example.com"))
    with (
        pytest.raises(IntegrityError, match="uq_it_db_customers_email") as info,
        database.session() as session,
    ):
        session.add(Customer(email="taken@example.com"))
    assert isinstance(info.value.__cause__, sqlalchemy.exc.IntegrityError)
    assert isinstance(info.value.__cause__.orig, psycopg.errors.UniqueViolation)
    assert "taken@example.com" not in str(info.value)
    with (
        pytest.raises(IntegrityError, match="fk_it_db_orders_customer_id_it_db_customers"),
        database.session() as session,
    ):
        session.add(Order(customer_id=uuid.uuid4()))


async def test_async_unique_violation_is_an_integrity_error(adatabase: AsyncDatabase) -> None:
    """Async: a duplicate key raises IntegrityError chained to psycopg's UniqueViolation."""
    async with adatabase.session() as session:
        session.add(Customer(email="taken@example.com"))

    async def duplicate() -> None:
        async with adatabase.session() as session:
            session.add(Customer(email="taken@example.com"))

    with pytest.raises(IntegrityError) as info:
        await duplicate()
    assert isinstance(info.value.__cause__, sqlalchemy.exc.IntegrityError)
    assert isinstance(info.value.__cause__.orig, psycopg.errors.UniqueViolation)


def test_ping_answers(database: Database) -> None:
    """ping() succeeds against a live server."""
    database.ping(5)


async def test_aping_answers(adatabase: AsyncDatabase) -> None:
    """aping() succeeds against a live server."""
    await adatabase.aping(5)


def test_ping_of_an_unreachable_server_is_a_database_error(postgres_url: str) -> None:
    """A database that does not exist fails the ping with a DatabaseError."""
    url = make_url(postgres_url).set(database=f"missing_{secrets.token_hex(4)}")
    engine = create_sync_engine(DatabaseSettings(url=url.render_as_string(False)))
    try:
        with pytest.raises(DatabaseError, match="primary database ping failed"):
            Database(engine).ping(5)
    finally:
        engine.dispose()


async def test_password_with_url_delimiters_connects(postgres_url: str, awkward_role: str) -> None:
    """Settings parts with a password holding @ : / % connect, sync and async, as that role."""
    url = make_url(postgres_url)
    settings = DatabaseSettings(
        driver="postgresql",
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=awkward_role,
        password=AWKWARD_PASSWORD,
        name=url.database or "",
    )
    engine = create_sync_engine(settings)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT current_user")).scalar_one() == awkward_role
            # The server may trust loopback and not ask: check what libpq was given.
            driver = connection.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            assert driver.info.password == AWKWARD_PASSWORD
            assert driver.info.dbname == url.database
    finally:
        engine.dispose()
    async_engine = create_async_engine(settings)
    try:
        await AsyncDatabase(async_engine).aping(5)
        async with async_engine.connect() as connection:
            role = (await connection.execute(text("SELECT current_user"))).scalar_one()
            assert role == awkward_role
    finally:
        await async_engine.dispose()


def test_statement_timeout_cancels_long_statements(postgres_url: str) -> None:
    """With statement_timeout, the server cancels pg_sleep(5) and a DatabaseError follows."""
    engine = create_sync_engine(DatabaseSettings(url=postgres_url, statement_timeout=0.2))
    try:
        with (
            pytest.raises(DatabaseError, match="statement timeout") as info,
            Database(engine).session() as session,
        ):
            session.execute(text("SELECT pg_sleep(5)"))
        assert not isinstance(info.value, IntegrityError)
        assert isinstance(info.value.__cause__, sqlalchemy.exc.OperationalError)
        assert isinstance(info.value.__cause__.orig, psycopg.errors.QueryCanceled)
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar_one() == "200ms"
    finally:
        engine.dispose()


async def test_async_statement_timeout_cancels_long_statements(postgres_url: str) -> None:
    """Async: the server cancels pg_sleep(5) after statement_timeout; DatabaseError follows."""
    engine = create_async_engine(DatabaseSettings(url=postgres_url, statement_timeout=0.2))

    async def sleep_too_long() -> None:
        async with AsyncDatabase(engine).session() as session:
            await session.execute(text("SELECT pg_sleep(5)"))

    try:
        with pytest.raises(DatabaseError, match="statement timeout"):
            await sleep_too_long()
    finally:
        await engine.dispose()


def test_server_timestamps_are_timezone_aware(database: Database) -> None:
    """created_at / updated_at read back time-zone aware; ids are native UUIDv7 values."""
    with database.session() as session:
        customer = Customer(email="a@example.com")
        session.add(customer)
    with database.session() as session:
        stored = session.scalars(select(Customer)).one()
    assert stored.id == customer.id
    assert stored.id.version == 7
    assert stored.created_at.tzinfo is not None
    assert stored.created_at.utcoffset() is not None
    assert stored.updated_at.tzinfo is not None
    columns = {
        c["name"]: c["type"] for c in inspect(database.engine).get_columns(Customer.__tablename__)
    }
    assert isinstance(columns["id"], sqlalchemy.UUID)
    assert isinstance(columns["created_at"], sqlalchemy.TIMESTAMP)
    assert columns["created_at"].timezone is True


def test_ssl_options_reach_the_server(postgres_url: str) -> None:
    """sslmode=disable connects in clear text; sslmode=require gets SSL or refuses to connect."""
    plain = create_sync_engine(DatabaseSettings(url=postgres_url, sslmode="disable"))
    try:
        with plain.connect() as connection:
            server_ssl = connection.execute(text("SHOW ssl")).scalar_one() == "on"
            query = text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert connection.execute(query).scalar_one() is False
    finally:
        plain.dispose()
    secure = create_sync_engine(DatabaseSettings(url=postgres_url, sslmode="require"))
    try:
        if server_ssl:
            with Database(secure).session() as session:
                assert session.execute(query).scalar_one() is True
        else:
            with (
                pytest.raises(DatabaseError, match="SSL"),
                Database(secure).session() as session,
            ):
                session.execute(text("SELECT 1"))
    finally:
        secure.dispose()


def test_create_all_creates_every_model_table(postgres_url: str) -> None:
    """create_all() makes every table of ModelBase.metadata on PostgreSQL."""
    engine = create_sync_engine(DatabaseSettings(url=postgres_url))
    try:
        create_all(Database(engine))
        assert set(ModelBase.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


async def test_acreate_all_creates_every_model_table(postgres_url: str) -> None:
    """acreate_all() makes every table of ModelBase.metadata through the async engine."""
    engine = create_async_engine(DatabaseSettings(url=postgres_url))
    try:
        await acreate_all(AsyncDatabase(engine))
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda c: inspect(c).get_table_names())
        assert set(ModelBase.metadata.tables) <= set(names)
    finally:
        await engine.dispose()
