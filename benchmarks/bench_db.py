"""Database helpers on PostgreSQL: bulk upsert and request-scoped sessions.

Run: ``.venv/bin/python benchmarks/bench_db.py`` (``make bench`` runs every benchmark).
The server comes from ``dtpyfw.testing.find_postgres()`` (``$DTPYFW_TEST_POSTGRES_URL``,
then 127.0.0.1:5432, then a launched process); the benchmark works in a fresh
database of its own and drops it at the end.

* bulk upsert -- 100,000 rows (id, sku, qty, price, name) into a table that already
  holds half of them (by primary key), so half the rows insert and half update,
  committed. Before every timed run the table is reset to the same state (not timed).
  Ours: ``bulk_upsert(session, Item, rows)`` with its defaults (``method="auto"``,
  which picks COPY at this size); also ``method="insert"`` (chunked ``INSERT ... ON
  CONFLICT``) for information. ORM merge loop: ``session.merge(Item(**row))`` per
  row, one commit. Raw COPY: psycopg by hand -- ``CREATE TEMP TABLE``, ``COPY ...
  FROM STDIN`` with ``write_row``, ``INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE``
  -- the practical limit. All receive the same list of dicts.
* scoped session -- acquire, ``SELECT 1``, commit, release. Ours: ``with
  container.scope(): container.db.session().execute(...)`` on a ``ServiceContainer``.
  Hand-made: ``with Session(engine, expire_on_commit=False) as s: s.execute(...);
  s.commit()`` on the same engine and pool. A variant without the query measures the
  bare acquire/release (no connection is checked out by either side).

Throughput is the best of ``REPEATS`` interleaved runs (garbage collector paused
while timing). The ORM loop is timed on a probe first; if 100k rows would take more
than ``ORM_BUDGET_S`` it is timed on ``ORM_SUBSET`` rows and its rate reported as the
100k estimate (labelled in the table).
"""

from __future__ import annotations

import contextlib
import gc
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from _report import Result, report
from psycopg import sql
from sqlalchemy import String, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from dtpyfw.config import Settings
from dtpyfw.container import ServiceContainer
from dtpyfw.db import ModelBase, bulk_upsert, uuid7
from dtpyfw.testing import find_postgres

ROWS = 100_000
REPEATS = 3
SESSIONS = 3_000
SESSION_REPEATS = 5
ORM_PROBE = 1_000
ORM_SUBSET = 10_000
ORM_BUDGET_S = 60.0
COLUMNS = ("id", "sku", "qty", "price", "name")
RAW_STAGE = (
    "CREATE TEMP TABLE stage ON COMMIT DROP AS "
    "SELECT id, sku, qty, price, name FROM bench_items WITH NO DATA"
)
RAW_COPY = "COPY stage (id, sku, qty, price, name) FROM STDIN"
RAW_MOVE = (
    "INSERT INTO bench_items (id, sku, qty, price, name) "
    "SELECT id, sku, qty, price, name FROM stage ON CONFLICT (id) DO UPDATE SET "
    "sku = excluded.sku, qty = excluded.qty, price = excluded.price, name = excluded.name, "
    "updated_at = now()"
)


class Item(ModelBase):
    """The benchmark table: a UUIDv7 key, a unique sku and three data columns."""

    __tablename__ = "bench_items"
    sku: Mapped[str] = mapped_column(String(32), unique=True)
    qty: Mapped[int]
    price: Mapped[float]
    name: Mapped[str] = mapped_column(String(64))


# -- data and table state ----------------------------------------------------------------
def make_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The upsert input, and the half of it (old values) that exists before each run."""
    rows = [
        {"id": uuid7(), "sku": f"sku-{n:07d}", "qty": n, "price": n * 0.5, "name": f"item {n}"}
        for n in range(ROWS)
    ]
    existing = [{**row, "qty": -1, "name": "old"} for row in rows[::2]]
    return rows, existing


def reset(dsn: str, existing: list[dict[str, Any]]) -> None:
    """Empty the table and load ``existing`` (raw COPY, not timed)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE bench_items")
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY bench_items ({', '.join(COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in existing:
                copy.write_row(tuple(row[c] for c in COLUMNS))
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE bench_items")


def timed(run: Callable[[], object]) -> float:
    """Seconds ``run`` takes, garbage collector paused."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    finally:
        gc.enable()


# -- upsert cases ------------------------------------------------------------------------
def ours(engine: Engine, rows: list[dict[str, Any]], method: str) -> None:
    with Session(engine) as session:
        result = bulk_upsert(session, Item, rows, method=method)  # type: ignore[arg-type]
        session.commit()
    assert result.rows == len(rows), result


def orm_merge(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with Session(engine) as session:
        for row in rows:
            session.merge(Item(**row))
        session.commit()


def raw_copy(dsn: str, rows: list[dict[str, Any]]) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(RAW_STAGE)
        with conn.cursor() as cur, cur.copy(RAW_COPY) as copy:
            for row in rows:
                copy.write_row((row["id"], row["sku"], row["qty"], row["price"], row["name"]))
        conn.execute(RAW_MOVE)
        conn.commit()


def upsert_results(engine: Engine, dsn: str) -> tuple[list[Result], list[str]]:
    rows, existing = make_rows()
    best: dict[str, float] = {}
    cases: dict[str, Callable[[], object]] = {
        "auto": lambda: ours(engine, rows, "auto"),
        "insert": lambda: ours(engine, rows, "insert"),
        "raw": lambda: raw_copy(dsn, rows),
    }
    for _ in range(REPEATS):
        for name, run in cases.items():
            reset(dsn, existing)
            best[name] = min(best.get(name, float("inf")), timed(run))

    reset(dsn, existing)
    probe = timed(lambda: orm_merge(engine, rows[:ORM_PROBE]))
    notes = []
    if probe / ORM_PROBE * ROWS > ORM_BUDGET_S:
        reset(dsn, existing)
        orm_rows = ORM_SUBSET
        orm_time = timed(lambda: orm_merge(engine, rows[:ORM_SUBSET]))
        orm_label = f"ORM merge loop ({ORM_SUBSET // 1000}k rows, extrapolated)"
        notes.append(
            f"ORM merge loop timed on {ORM_SUBSET:,} rows (half existing) in {orm_time:.1f} s; "
            f"100k would take ~{orm_time * ROWS / ORM_SUBSET:.0f} s at that rate"
        )
    else:
        reset(dsn, existing)
        orm_rows = ROWS
        orm_time = timed(lambda: orm_merge(engine, rows))
        orm_label = "ORM merge loop"
    orm_rate = orm_rows / orm_time
    rate = {name: ROWS / seconds for name, seconds in best.items()}
    results = [
        Result.rate("bulk upsert 100k vs " + orm_label, rate["auto"], orm_rate, "rows/s"),
        Result.rate(
            "bulk upsert 100k vs raw COPY + INSERT ON CONFLICT", rate["auto"], rate["raw"], "rows/s"
        ),
        Result.rate(
            "bulk upsert 100k method=insert vs " + orm_label, rate["insert"], orm_rate, "rows/s"
        ),
    ]
    notes.append(
        f"upsert: best of {REPEATS}; auto picked COPY (threshold 5,000 rows); "
        f"method=insert {best['insert']:.2f} s, auto {best['auto']:.2f} s, raw {best['raw']:.2f} s"
    )
    return results, notes


# -- session cases -----------------------------------------------------------------------
def session_results(container: Any) -> tuple[list[Result], list[str]]:
    engine: Engine = container.db.engine()
    select_1 = text("SELECT 1")

    def scoped(query: bool) -> Callable[[], None]:
        def run() -> None:
            for _ in range(SESSIONS):
                with container.scope():
                    session = container.db.session()
                    if query:
                        session.execute(select_1)

        return run

    def hand_made(query: bool) -> Callable[[], None]:
        def run() -> None:
            for _ in range(SESSIONS):
                with Session(engine, expire_on_commit=False) as session:
                    if query:
                        session.execute(select_1)
                    session.commit()

        return run

    cases = {
        ("query", "ours"): scoped(True),
        ("query", "hand"): hand_made(True),
        ("bare", "ours"): scoped(False),
        ("bare", "hand"): hand_made(False),
    }
    for run in cases.values():  # warm the pool and the statement caches
        run()
    best: dict[tuple[str, str], float] = {}
    for _ in range(SESSION_REPEATS):
        for key, run in cases.items():
            best[key] = min(best.get(key, float("inf")), timed(run))
    rate = {key: SESSIONS / seconds for key, seconds in best.items()}
    results = [
        Result.rate(
            "scoped session + SELECT 1 vs hand-made Session(engine)",
            rate[("query", "ours")],
            rate[("query", "hand")],
            "sessions/s",
        ),
        Result.rate(
            "scoped session acquire/release vs hand-made Session(engine)",
            rate[("bare", "ours")],
            rate[("bare", "hand")],
            "sessions/s",
        ),
    ]
    overhead = best[("query", "ours")] / best[("query", "hand")]
    notes = [
        f"sessions: {SESSIONS:,} per run, best of {SESSION_REPEATS}; scoped/hand-made time "
        f"with SELECT 1: {overhead:.2f}x (target <= 1.2x)"
    ]
    return results, notes


# -- setup -------------------------------------------------------------------------------
@contextlib.contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards; yields its psycopg DSN."""
    name = f"dtpyfw_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def main() -> None:
    started = time.perf_counter()
    with find_postgres() as server, bench_database(server.url) as dsn:
        url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        settings = Settings.model_validate({"db": {"url": url, "pool_size": 5}})
        container: Any = ServiceContainer.from_settings(settings)
        try:
            engine: Engine = container.db.engine()
            with engine.begin() as connection:
                ModelBase.metadata.create_all(connection, tables=[Item.__table__])
            upserts, upsert_notes = upsert_results(engine, dsn)
            sessions, session_notes = session_results(container)
            with engine.connect() as connection:
                version = connection.execute(text("SHOW server_version")).scalar_one()
        finally:
            container.shutdown_resources()
    notes = [
        *upsert_notes,
        *session_notes,
        "ratio above 1 means ours is faster (ours/baseline rate)",
        f"PostgreSQL {version} ({server.origin}), python {sys.version.split()[0]}, "
        f"total benchmark time {time.perf_counter() - started:.1f} s",
    ]
    report("db", [*upserts, *sessions], title="db benchmark (PostgreSQL)", notes=notes)


if __name__ == "__main__":
    main()
