"""bulk_upsert / abulk_upsert on SQLite: conflict targets, update columns, chunks, checks."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Float, Integer, String, Table, event, select
from sqlalchemy.orm import Mapped, mapped_column

from dtpyfw.db import (
    AsyncDatabase,
    Database,
    DatabaseSettings,
    ModelBase,
    Repository,
    VersionedMixin,
    abulk_upsert,
    acreate_all,
    bulk_upsert,
    create_all,
    create_async_engine,
    create_sync_engine,
)
from dtpyfw.db._upsert import SQLITE_MAX_PARAMETERS


class Product(VersionedMixin, ModelBase):
    """A versioned row with a unique sku and an attribute whose column has another name."""

    __tablename__ = "unit_db_upsert_products"
    sku: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str]
    stock: Mapped[int] = mapped_column(default=0)
    kind: Mapped[str] = mapped_column("kind_col", default="plain")


RATES = Table(
    "unit_db_upsert_rates",
    ModelBase.metadata,
    Column("code", String(3), primary_key=True),
    Column("rate", Float, nullable=False),
)
WIDE = Table(
    "unit_db_upsert_wide",
    ModelBase.metadata,
    Column("k", Integer, primary_key=True),
    *(Column(f"c{n}", Integer) for n in range(69)),
)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """A sync Database on a SQLite file with the tables created."""
    engine = create_sync_engine(DatabaseSettings(name=str(tmp_path / "upsert.sqlite3")))
    database = Database(engine)
    create_all(database)
    yield database
    engine.dispose()


@pytest.fixture
async def adatabase(tmp_path: Path) -> AsyncIterator[AsyncDatabase]:
    """An async Database on a SQLite file with the tables created."""
    engine = create_async_engine(DatabaseSettings(name=str(tmp_path / "aupsert.sqlite3")))
    database = AsyncDatabase(engine)
    await acreate_all(database)
    yield database
    await engine.dispose()


def _products(database: Database) -> dict[str, tuple[str, int, str, int]]:
    with database.session() as session:
        rows = session.scalars(select(Product)).all()
        return {p.sku: (p.name, p.stock, p.kind, p.version) for p in rows}


def _seed(database: Database) -> None:
    with database.session() as session:
        session.add_all(
            [Product(sku="a", name="A", stock=1), Product(sku="b", name="B", stock=2, kind="big")]
        )


def test_inserts_new_rows_and_updates_existing_ones(database: Database) -> None:
    """Conflicting rows are updated (version bumped), new ones inserted with their defaults."""
    _seed(database)
    rows = [
        {"sku": "a", "name": "A2", "stock": 10},
        {"sku": "c", "name": "C", "stock": 30},
    ]
    with database.session() as session:
        before = session.scalars(select(Product.created_at).where(Product.sku == "a")).one()
        result = bulk_upsert(session, Product, rows, conflict_columns=["sku"])
    assert (result.rows, result.affected, result.method) == (2, 2, "insert")
    assert (result.inserted, result.updated) == (None, None)  # SQLite cannot tell them apart
    assert _products(database) == {
        "a": ("A2", 10, "plain", 2),
        "b": ("B", 2, "big", 1),
        "c": ("C", 30, "plain", 1),
    }
    with database.session() as session:
        created = session.scalars(select(Product).where(Product.sku.in_(["a", "c"]))).all()
    assert {p.sku: p.created_at == before for p in created}["a"] is True
    assert all(p.id.version == 7 for p in created)


def test_on_conflict_nothing_keeps_existing_rows(database: Database) -> None:
    """on_conflict='nothing' inserts only the new keys and counts them."""
    _seed(database)
    rows = [{"sku": "a", "name": "X"}, {"sku": "d", "name": "D"}]
    with database.session() as session:
        result = bulk_upsert(
            session, Product, rows, conflict_columns=["sku"], on_conflict="nothing"
        )
    assert (result.rows, result.affected, result.inserted, result.updated) == (2, 1, 1, 0)
    assert _products(database)["a"] == ("A", 1, "plain", 1)
    assert _products(database)["d"] == ("D", 0, "plain", 1)


def test_update_columns_limits_what_a_conflict_changes(database: Database) -> None:
    """Only update_columns are written on conflict; attribute names map to column names."""
    _seed(database)
    rows = [{"sku": "b", "name": "ignored", "stock": 7, "kind": "huge"}]
    with database.session() as session:
        bulk_upsert(session, Product, rows, conflict_columns=["sku"], update_columns=["kind"])
    assert _products(database)["b"] == ("B", 2, "huge", 2)


def test_constraint_name_targets_its_columns_on_sqlite(database: Database) -> None:
    """A unique constraint named by the naming convention works as the conflict target."""
    _seed(database)
    with database.session() as session:
        bulk_upsert(
            session,
            Product,
            [{"sku": "a", "name": "Z"}],
            constraint="uq_unit_db_upsert_products_sku",
        )
    assert _products(database)["a"][0] == "Z"


def test_default_conflict_target_is_the_primary_key(database: Database) -> None:
    """A plain Table upserts on its primary key by default."""
    with database.session() as session:
        bulk_upsert(session, RATES, [{"code": "EUR", "rate": 1.0}, {"code": "USD", "rate": 1.1}])
        result = bulk_upsert(session, RATES, [{"code": "USD", "rate": 1.2}])
        stored = dict(session.execute(select(RATES.c.code, RATES.c.rate)).all())
    assert result.affected == 1
    assert stored == {"EUR": 1.0, "USD": 1.2}


def test_chunks_respect_the_bound_parameter_limit(database: Database) -> None:
    """Each statement stays under SQLite's parameter limit; chunk size follows the columns."""
    statements: list[int] = []

    def count(_conn: Any, _cur: Any, _sql: str, params: Any, *_: Any) -> None:
        statements.append(len(params))

    rows = ({"k": n, **{f"c{i}": n for i in range(69)}} for n in range(1000))
    event.listen(database.engine, "before_cursor_execute", count)
    try:
        with database.session() as session:
            result = bulk_upsert(session, WIDE, rows)
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    per_statement = (
        min(SQLITE_MAX_PARAMETERS, database.engine.dialect.insertmanyvalues_max_parameters) // 70
    )
    assert result.affected == 1000
    assert max(statements) <= SQLITE_MAX_PARAMETERS
    assert len(statements) == math.ceil(1000 / per_statement)


def test_explicit_chunk_size_streams_a_generator(database: Database) -> None:
    """A generator is consumed chunk by chunk; chunk_size sets the rows per statement."""
    statements: list[str] = []
    event.listen(database.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    rows = ({"sku": f"s{n}", "name": f"n{n}"} for n in range(100))
    with database.session() as session:
        result = bulk_upsert(session, Product, rows, conflict_columns=["sku"], chunk_size=7)
    inserts = [s for s in statements if s.startswith("INSERT INTO unit_db_upsert_products")]
    assert result.affected == 100
    assert len(inserts) == math.ceil(100 / 7)
    assert len(_products(database)) == 100


def test_no_rows_do_nothing() -> None:
    """An empty input touches nothing (not even the connection)."""
    result = bulk_upsert(None, Product, [])  # type: ignore[arg-type]
    assert (result.rows, result.affected, result.inserted, result.updated) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("rows", "options", "message"),
    [
        ([{"sku": "a", "name": "A"}, {"sku": "b"}], {}, r"row 1 .* \(missing \['name'\]"),
        ([{"sku": "a", "name": "A"}, {"sku": "b", "name": "B", "x": 1}], {}, r"unexpected \['x'\]"),
        ([{"sku": "a", "nope": 1}], {}, r"row key 'nope' is not a column"),
        ([{"sku": "a"}], {"conflict_columns": ["sku"], "constraint": "x"}, "not both"),
        ([{"sku": "a"}], {"constraint": "uq_nope"}, r"no unique constraint .* 'uq_nope'; known"),
        ([{"sku": "a"}], {"conflict_columns": "sku"}, "is a sequence of names"),
        ([{"sku": "a"}], {"update_columns": ["name"]}, "update columns name are not in the rows"),
        ([{"sku": "a"}], {"method": "copy"}, "needs postgresql with psycopg"),
        ([{"sku": "a"}], {"method": "fast"}, "method is 'auto', 'insert' or 'copy'"),
        ([{"sku": "a"}], {"on_conflict": "replace"}, "on_conflict is 'update' or 'nothing'"),
        ([{"sku": "a"}], {"chunk_size": 0}, r"chunk_size must be 1\.\.\d+ for 1 column"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    database: Database, rows: list[dict[str, Any]], options: dict[str, Any], message: str
) -> None:
    """Inconsistent rows, unknown columns and bad options raise ValueError; nothing is written."""
    options.setdefault("conflict_columns", None if "constraint" in options else ["sku"])
    with database.session() as session, pytest.raises(ValueError, match=message):
        bulk_upsert(session, Product, rows, **options)
    assert _products(database) == {}


def test_repository_upsert_delegates(database: Database) -> None:
    """Repository.upsert() is bulk_upsert on the repository's model and session."""
    with database.session() as session:
        result = Repository(Product, session).upsert(
            [{"sku": "r", "name": "R"}], conflict_columns=["sku"]
        )
    assert result.affected == 1
    assert "r" in _products(database)


async def test_async_upsert_on_aiosqlite(adatabase: AsyncDatabase) -> None:
    """abulk_upsert inserts then updates through an AsyncSession and an AsyncConnection."""
    async with adatabase.session() as session:
        first = await abulk_upsert(
            session, Product, [{"sku": "a", "name": "A"}], conflict_columns=["sku"]
        )
    async with adatabase.engine.begin() as connection:
        second = await abulk_upsert(
            connection, Product, [{"sku": "a", "name": "A2"}], conflict_columns=["sku"]
        )
        nothing = await abulk_upsert(
            connection,
            Product,
            [{"sku": "a", "name": "A3"}],
            conflict_columns=["sku"],
            on_conflict="nothing",
        )
    assert (first.affected, second.affected, nothing.affected) == (1, 1, 0)
    async with adatabase.session() as session:
        stored = (await session.scalars(select(Product))).one()
    assert (stored.name, stored.version) == ("A2", 2)
