"""Repository and AsyncRepository on PostgreSQL: timestamps, locking, races and keyset pages."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import String, select, text
from sqlalchemy.orm import Mapped, mapped_column

from dtpyfw.core.errors import IntegrityError
from dtpyfw.db import (
    AsyncDatabase,
    AsyncRepository,
    Database,
    DatabaseSettings,
    FilterSpec,
    ModelBase,
    Repository,
    SoftDeleteMixin,
    StaleVersionError,
    VersionedMixin,
    create_async_engine,
    create_sync_engine,
)
from dtpyfw.testing._backends import _fresh_database
from dtpyfw.testing._launchers import ServiceHandle

RACERS = 12


class Account(SoftDeleteMixin, VersionedMixin, ModelBase):
    """A versioned, soft-deletable row keyed by a unique handle."""

    __tablename__ = "it_db_repo_accounts"
    handle: Mapped[str] = mapped_column(String(40), unique=True)
    tier: Mapped[int] = mapped_column(default=0)
    note: Mapped[str | None]


SPEC = FilterSpec(Account, fields={"tier": {"eq"}}, sortable={"created_at", "tier", "handle"})


@pytest.fixture(scope="module")
def settings(postgres_service: ServiceHandle) -> Iterator[DatabaseSettings]:
    """One fresh database for this module, with a pool big enough for every racer."""
    with _fresh_database(postgres_service.url) as dsn:
        url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        yield DatabaseSettings(url=url, pool_size=RACERS + 2, max_overflow=0)


@pytest.fixture(scope="module")
def module_database(settings: DatabaseSettings) -> Iterator[Database]:
    """A sync Database with the accounts table, for the whole module."""
    engine = create_sync_engine(settings)
    with engine.begin() as connection:
        ModelBase.metadata.create_all(connection, tables=[Account.__table__])
    yield Database(engine)
    engine.dispose()


@pytest.fixture
def database(module_database: Database) -> Iterator[Database]:
    """The module's Database, emptied after each test."""
    yield module_database
    with module_database.engine.begin() as connection:
        connection.execute(text("TRUNCATE it_db_repo_accounts"))


@pytest.fixture
async def adatabase(settings: DatabaseSettings, database: Database) -> AsyncIterator[AsyncDatabase]:
    """An AsyncDatabase on the same database (tables made by the sync fixture)."""
    engine = create_async_engine(settings)
    yield AsyncDatabase(engine)
    await engine.dispose()


def _count(database: Database, handle: str) -> int:
    with database.session() as session:
        query = text("SELECT count(*) FROM it_db_repo_accounts WHERE handle = :h")
        return int(session.execute(query, {"h": handle}).scalar_one())


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        threading.Event().wait(0.01)


def test_update_moves_updated_at_and_version(database: Database) -> None:
    """A later update sets updated_at past created_at (server time) and bumps version."""
    with database.session() as session:
        account = Repository(Account, session).create(handle="ann")
    with database.session() as session:
        updated = Repository(Account, session).update(account.id, {"tier": 2}, expected_version=1)
    assert updated is not None
    assert updated.created_at == account.created_at
    assert updated.updated_at > account.updated_at
    assert updated.updated_at.tzinfo is not None
    assert (updated.tier, updated.version) == (2, 2)


def test_stale_flush_and_stale_expected_version_are_both_stale_version_errors(
    database: Database,
) -> None:
    """An ORM flush over a moved row and an expected_version mismatch raise StaleVersionError."""
    with database.session() as session:
        account = Repository(Account, session).create(handle="bob")

    def lose_the_race() -> None:
        with database.session() as session:
            mine = session.get(Account, account.id)
            assert mine is not None
            with database.session() as other:
                Repository(Account, other).update(account.id, {"note": "theirs"})
            mine.note = "mine"

    with pytest.raises(StaleVersionError):
        lose_the_race()
    with database.session() as session, pytest.raises(StaleVersionError, match="version 2, not 1"):
        Repository(Account, session).update(account.id, {"note": "late"}, expected_version=1)


def test_unique_violation_is_an_integrity_error(database: Database) -> None:
    """create() of a duplicate handle raises IntegrityError naming the constraint."""
    with database.session() as session:
        Repository(Account, session).create(handle="dup")
    with (
        pytest.raises(IntegrityError, match="uq_it_db_repo_accounts_handle"),
        database.session() as session,
    ):
        Repository(Account, session).create(handle="dup")


def test_get_or_create_waits_for_a_concurrent_insert(database: Database) -> None:
    """A caller racing an uncommitted insert blocks on it, then returns that row (created=False)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    def second_caller() -> tuple[str, bool]:
        with database.session() as session:
            row, created = Repository(Account, session).get_or_create({"tier": 9}, handle="race")
            return str(row.id), created

    def waiting_on_a_lock() -> bool:
        with database.engine.connect() as connection:
            query = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return bool(connection.execute(query).scalar_one())

    try:
        with database.session() as session:
            first, first_created = Repository(Account, session).get_or_create(
                {"tier": 1}, handle="race"
            )
            future = pool.submit(second_caller)
            _wait_for(waiting_on_a_lock)  # its INSERT ... ON CONFLICT waits for our row
        second_id, second_created = future.result(timeout=10)
    finally:
        pool.shutdown(wait=True)
    assert (first_created, second_created) == (True, False)
    assert second_id == str(first.id)
    assert _count(database, "race") == 1


def test_get_or_create_under_a_thread_storm(database: Database) -> None:
    """Many threads asking for the same key at once create exactly one row and all get it."""
    barrier = threading.Barrier(RACERS)

    def call() -> tuple[str, bool]:
        barrier.wait(timeout=10)
        with database.session() as session:
            row, created = Repository(Account, session).get_or_create(handle="storm")
            return str(row.id), created

    with concurrent.futures.ThreadPoolExecutor(max_workers=RACERS) as pool:
        results = list(pool.map(lambda _: call(), range(RACERS)))
    assert len({row_id for row_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert _count(database, "storm") == 1


async def test_async_get_or_create_under_a_task_storm(
    adatabase: AsyncDatabase, database: Database
) -> None:
    """Many tasks, each with its own session, racing on one key create exactly one row."""
    barrier = asyncio.Barrier(RACERS)

    async def call() -> tuple[str, bool]:
        async with adatabase.session() as session:
            await barrier.wait()
            row, created = await AsyncRepository(Account, session).get_or_create(handle="tasks")
            return str(row.id), created

    async with asyncio.timeout(30):
        results = await asyncio.gather(*(call() for _ in range(RACERS)))
    assert len({row_id for row_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert _count(database, "tasks") == 1


async def test_async_twin_on_postgresql(adatabase: AsyncDatabase) -> None:
    """The async repository's writes and reads on psycopg's async driver."""
    async with adatabase.session() as session:
        accounts = AsyncRepository(Account, session)
        made = [await accounts.create(handle=f"a{n}", tier=n % 2) for n in range(5)]
        assert await accounts.count(tier=1) == 2
        assert await accounts.delete(made[0].id)
        assert await accounts.count() == 4
        updated = await accounts.update(made[1].id, {"note": "x"}, expected_version=1)
        assert updated is not None
        assert updated.updated_at.tzinfo is not None
        with pytest.raises(StaleVersionError):
            await accounts.delete(made[1].id, expected_version=1)
        page = await accounts.page(limit=2, offset=2, with_total=True)
        assert (len(page.items), page.total) == (2, 4)


def test_keyset_pages_over_timestamps_and_ties(database: Database) -> None:
    """Sorting by -created_at (ties within a transaction) then id pages through every row once."""
    for batch in range(3):
        with database.session() as session:  # rows of one transaction share created_at
            accounts = Repository(Account, session)
            for n in range(4):
                accounts.create(handle=f"k{batch}{n}", tier=n % 2)
    keys = SPEC.sort_keys("-created_at")
    with database.session() as session:
        accounts = Repository(Account, session, cursor_secret="s")
        expected = [a.handle for a in session.scalars(SPEC.apply(select(Account), {}, keys))]
        seen: list[str] = []
        cursor = None
        while True:
            page = accounts.keyset_page(sort=keys, limit=5, cursor=cursor)
            seen.extend(a.handle for a in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    assert seen == expected
    assert seen[:4] == ["k20", "k21", "k22", "k23"]
    assert len(seen) == 12


def test_keyset_cursor_keeps_microseconds_and_time_zone(database: Database) -> None:
    """A cursor round-trips a timestamptz exactly, so no row is skipped or repeated."""
    with database.session() as session:
        accounts = Repository(Account, session)
        for n in range(3):
            accounts.create(handle=f"m{n}")
            session.execute(
                text("UPDATE it_db_repo_accounts SET created_at = :t WHERE handle = :h"),
                {"t": datetime(2024, 5, 1, 12, 0, 0, 123456 + n, tzinfo=UTC), "h": f"m{n}"},
            )
    with database.session() as session:
        accounts = Repository(Account, session)
        first = accounts.keyset_page(sort=["created_at"], limit=1)
        second = accounts.keyset_page(sort=["created_at"], limit=1, cursor=first.next_cursor)
        third = accounts.keyset_page(sort=["created_at"], limit=2, cursor=second.next_cursor)
    assert [a.handle for a in first.items + second.items + third.items] == ["m0", "m1", "m2"]
    assert third.next_cursor is None
