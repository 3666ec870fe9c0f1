"""bulk_upsert / abulk_upsert on PostgreSQL: exact counts, the COPY path, types and limits."""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Column, Integer, Numeric, String, Table, event, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dtpyfw.core.errors import DatabaseError
from dtpyfw.db import (
    AsyncDatabase,
    Database,
    DatabaseSettings,
    ModelBase,
    VersionedMixin,
    abulk_upsert,
    bulk_upsert,
    create_async_engine,
    create_sync_engine,
)
from dtpyfw.db._upsert import POSTGRES_MAX_PARAMETERS
from dtpyfw.testing._backends import _fresh_database
from dtpyfw.testing._launchers import ServiceHandle


class Grade(enum.Enum):
    """A PostgreSQL enum column's values."""

    LOW = "low"
    HIGH = "high"


class Stock(VersionedMixin, ModelBase):
    """Columns of the types COPY must carry like an INSERT would."""

    __tablename__ = "it_db_upsert_stock"
    sku: Mapped[str] = mapped_column(String(40), unique=True)
    qty: Mapped[int] = mapped_column(default=0)
    price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    grade: Mapped[Grade] = mapped_column(default=Grade.LOW)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    seen: Mapped[datetime | None]
    label: Mapped[str | None]


WIDE = Table(
    "it_db_upsert_wide",
    ModelBase.metadata,
    Column("k", Integer, primary_key=True),
    *(Column(f"c{n}", Integer) for n in range(99)),
)


@pytest.fixture(scope="module")
def pg_url(postgres_service: ServiceHandle) -> Iterator[str]:
    """One fresh database for this module."""
    with _fresh_database(postgres_service.url) as dsn:
        yield dsn.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="module")
def module_database(pg_url: str) -> Iterator[Database]:
    """A sync Database with the upsert tables, for the whole module."""
    engine = create_sync_engine(DatabaseSettings(url=pg_url))
    with engine.begin() as connection:
        ModelBase.metadata.create_all(connection, tables=[Stock.__table__, WIDE])
    yield Database(engine)
    engine.dispose()


@pytest.fixture
def database(module_database: Database) -> Iterator[Database]:
    """The module's Database, emptied after each test."""
    yield module_database
    with module_database.engine.begin() as connection:
        connection.execute(text("TRUNCATE it_db_upsert_stock, it_db_upsert_wide"))


@pytest.fixture
async def adatabase(pg_url: str, database: Database) -> AsyncIterator[AsyncDatabase]:
    """An AsyncDatabase on the same database."""
    engine = create_async_engine(DatabaseSettings(url=pg_url))
    yield AsyncDatabase(engine)
    await engine.dispose()


def _rows(count: int, start: int = 0, qty: int = 1) -> list[dict[str, Any]]:
    return [{"sku": f"s{n:06d}", "qty": qty} for n in range(start, start + count)]


def _stock(database: Database) -> dict[str, tuple[int, int]]:
    with database.session() as session:
        return {s.sku: (s.qty, s.version) for s in session.scalars(select(Stock))}


@pytest.mark.parametrize("method", ["insert", "copy"])
def test_counts_tell_inserted_from_updated(database: Database, method: str) -> None:
    """RETURNING (xmax = 0) splits affected rows into inserted and updated, on both paths."""
    with database.session() as session:
        first = bulk_upsert(session, Stock, _rows(30), conflict_columns=["sku"], method=method)
    with database.session() as session:
        second = bulk_upsert(
            session,
            Stock,
            _rows(20, start=20, qty=5),
            conflict_columns=["sku"],
            method=method,
        )
    assert (first.rows, first.affected, first.inserted, first.updated) == (30, 30, 30, 0)
    assert (second.rows, second.affected, second.inserted, second.updated) == (20, 20, 10, 10)
    assert second.method == method
    stored = _stock(database)
    assert len(stored) == 40
    assert stored["s000019"] == (1, 1)
    assert stored["s000020"] == (5, 2)  # updated: version bumped
    assert stored["s000039"] == (5, 1)  # inserted by the second call


@pytest.mark.parametrize("method", ["insert", "copy"])
def test_do_nothing_counts_only_inserts(database: Database, method: str) -> None:
    """on_conflict='nothing' leaves existing rows alone and reports the inserted ones."""
    with database.session() as session:
        bulk_upsert(session, Stock, _rows(5), conflict_columns=["sku"])
        result = bulk_upsert(
            session,
            Stock,
            _rows(10, qty=7),
            constraint="uq_it_db_upsert_stock_sku",
            on_conflict="nothing",
            method=method,
        )
    assert (result.affected, result.inserted, result.updated) == (5, 5, 0)
    stored = _stock(database)
    assert stored["s000000"] == (1, 1)
    assert stored["s000009"] == (7, 1)


def test_copy_carries_every_type_like_an_insert(database: Database) -> None:
    """JSONB, enums, numerics, time zones, NULLs and awkward text survive COPY unchanged."""
    when = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    awkward = "tab\there\nnewline \\N backslash \\ quote ' \" ∑"
    row = {
        "sku": "x",
        "qty": 3,
        "price": Decimal("12.34"),
        "grade": Grade.HIGH,
        "attrs": {"nested": {"list": [1, "two", None]}, "text": awkward},
        "seen": when,
        "label": awkward,
    }
    nulls = {**row, "sku": "y", "price": None, "seen": None, "label": None}
    with database.session() as session:
        result = bulk_upsert(session, Stock, [row, nulls], conflict_columns=["sku"], method="copy")
    assert result.method == "copy"
    with database.session() as session:
        stored = {s.sku: s for s in session.scalars(select(Stock))}
    x, y = stored["x"], stored["y"]
    assert (x.qty, x.price, x.grade, x.attrs, x.seen, x.label) == (
        3,
        Decimal("12.34"),
        Grade.HIGH,
        row["attrs"],
        when,
        awkward,
    )
    assert (y.price, y.seen, y.label) == (None, None, None)
    assert isinstance(x.id, uuid.UUID)
    assert x.id.version == 7
    assert x.id != y.id
    assert x.created_at.tzinfo is not None


def test_auto_switches_to_copy_at_the_threshold(database: Database) -> None:
    """method='auto' uses INSERT below copy_threshold rows and COPY from it on, streaming input."""
    with database.session() as session:
        small = bulk_upsert(
            session, Stock, iter(_rows(9)), conflict_columns=["sku"], copy_threshold=10
        )
        large = bulk_upsert(
            session, Stock, iter(_rows(25, start=5)), conflict_columns=["sku"], copy_threshold=10
        )
    assert (small.method, small.inserted) == ("insert", 9)
    assert (large.method, large.inserted, large.updated) == ("copy", 21, 4)
    assert len(_stock(database)) == 30


def test_conflict_update_refreshes_updated_at_but_keeps_created_at(database: Database) -> None:
    """On conflict, updated_at moves to the server's now() and created_at stays."""
    with database.session() as session:
        bulk_upsert(session, Stock, _rows(1), conflict_columns=["sku"])
    with database.session() as session:
        before = session.scalars(select(Stock)).one()
    for method in ("insert", "copy"):
        with database.session() as session:
            bulk_upsert(session, Stock, _rows(1, qty=2), conflict_columns=["sku"], method=method)
    with database.session() as session:
        after = session.scalars(select(Stock)).one()
    assert after.created_at == before.created_at
    assert after.updated_at > before.updated_at
    assert after.version == 3


def test_a_key_twice_in_one_call_is_a_database_error(database: Database) -> None:
    """PostgreSQL cannot update one row twice in a statement: DatabaseError, nothing written."""
    rows = [{"sku": "same", "qty": 1}, {"sku": "same", "qty": 2}]
    for method in ("insert", "copy"):
        with (
            pytest.raises(DatabaseError, match="cannot affect row a second time"),
            database.session() as session,
        ):
            bulk_upsert(session, Stock, rows, conflict_columns=["sku"], method=method)
    assert _stock(database) == {}


def test_copy_twice_in_one_transaction_leaves_no_temp_table(database: Database) -> None:
    """Each COPY stages in its own temporary table and drops it."""
    with database.session() as session:
        for _ in range(2):
            bulk_upsert(session, Stock, _rows(3), conflict_columns=["sku"], method="copy")
        staged = session.execute(
            text("SELECT count(*) FROM pg_class WHERE relname LIKE 'dtpyfw_upsert_%'")
        ).scalar_one()
    assert staged == 0


def test_wide_rows_stay_under_the_parameter_limit(database: Database) -> None:
    """100 columns x 400 rows go in statements that each stay under 65,535 parameters."""
    sizes: list[int] = []
    listener = lambda *args: sizes.append(len(args[3]))  # noqa: E731
    rows = [{"k": n, **{f"c{i}": n for i in range(99)}} for n in range(400)]
    event.listen(database.engine, "before_cursor_execute", listener)
    try:
        with database.session() as session:
            result = bulk_upsert(session, WIDE, rows, method="insert")
    finally:
        event.remove(database.engine, "before_cursor_execute", listener)
    assert result.inserted == 400
    assert len(sizes) > 1
    assert max(sizes) <= POSTGRES_MAX_PARAMETERS


async def test_async_insert_and_copy(adatabase: AsyncDatabase, database: Database) -> None:
    """abulk_upsert counts exactly on both paths through psycopg's async driver."""
    async with adatabase.session() as session:
        inserted = await abulk_upsert(session, Stock, _rows(10), conflict_columns=["sku"])
    async with adatabase.session() as session:
        copied = await abulk_upsert(
            session, Stock, _rows(10, start=5, qty=3), conflict_columns=["sku"], method="copy"
        )
    assert (inserted.method, inserted.inserted, inserted.updated) == ("insert", 10, 0)
    assert (copied.method, copied.inserted, copied.updated) == ("copy", 5, 5)
    assert _stock(database)["s000007"] == (3, 2)
