"""create_sync_engine / create_async_engine: options per driver, no PostgreSQL server needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.pool import QueuePool

from dtpyfw.db import DatabaseSettings, create_async_engine, create_sync_engine

POSTGRES = {
    "driver": "postgresql",
    "host": "db.internal",
    "port": 6543,
    "user": "svc",
    "name": "orders",
    "pool_size": 7,
    "max_overflow": 3,
    "pool_timeout": 4.5,
    "pool_recycle": 600,
    "pool_pre_ping": False,
}


class _StopError(Exception):
    """Raised by a do_connect hook so no network connection is attempted."""


def _connect_params(settings: DatabaseSettings) -> dict[str, Any]:
    """The keyword arguments psycopg.connect would receive for ``settings``."""
    engine = create_sync_engine(settings)
    captured: dict[str, Any] = {}

    def capture(dialect: object, record: object, cargs: object, cparams: dict[str, Any]) -> None:
        captured.update(cparams)
        raise _StopError

    event.listen(engine, "do_connect", capture)
    try:
        with pytest.raises(_StopError):
            engine.connect()
    finally:
        engine.dispose()
    return captured


def test_sqlite_engine_creates_the_file_directory(tmp_path: Path) -> None:
    """The SQLite file's missing parent directories are created with the engine."""
    path = tmp_path / "a" / "b" / "app.sqlite3"
    engine = create_sync_engine(DatabaseSettings(name=str(path)))
    try:
        assert path.parent.is_dir()
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        assert path.is_file()
    finally:
        engine.dispose()


def test_sqlite_sync_connections_enforce_foreign_keys(tmp_path: Path) -> None:
    """Every sync SQLite connection runs with PRAGMA foreign_keys=ON."""
    engine = create_sync_engine(DatabaseSettings(name=str(tmp_path / "fk.sqlite3")))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    finally:
        engine.dispose()


async def test_sqlite_async_connections_enforce_foreign_keys(tmp_path: Path) -> None:
    """Every aiosqlite connection runs with PRAGMA foreign_keys=ON, in a created directory."""
    path = tmp_path / "nested" / "fk.sqlite3"
    engine = create_async_engine(DatabaseSettings(name=str(path)))
    try:
        assert engine.url.drivername == "sqlite+aiosqlite"
        async with engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
        assert path.is_file()
    finally:
        await engine.dispose()


def test_postgres_engine_applies_the_pool_options() -> None:
    """pool_size, max_overflow, pool_timeout, pool_recycle and pool_pre_ping reach the pool."""
    engine = create_sync_engine(DatabaseSettings.model_validate(POSTGRES))
    try:
        pool = engine.pool
        assert isinstance(pool, QueuePool)
        assert engine.url.drivername == "postgresql+psycopg"
        assert pool.size() == 7
        assert pool.timeout() == 4.5
        assert pool._max_overflow == 3
        assert pool._recycle == 600
        assert pool._pre_ping is False
    finally:
        engine.dispose()


async def test_postgres_async_engine_uses_psycopg_async() -> None:
    """The async engine uses psycopg's async dialect with the same pool size."""
    engine = create_async_engine(DatabaseSettings.model_validate(POSTGRES))
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.dialect.is_async
        assert isinstance(engine.pool, QueuePool)
        assert engine.pool.size() == 7
    finally:
        await engine.dispose()


def test_password_with_url_characters_survives_escaping() -> None:
    """A password containing @ : / % reaches the driver intact, and the host is unchanged."""
    settings = DatabaseSettings.model_validate({**POSTGRES, "password": "p@ss:/%w0rd"})
    params = _connect_params(settings)
    assert params["password"] == "p@ss:/%w0rd"
    assert (params["host"], params["port"], params["dbname"]) == ("db.internal", 6543, "orders")
    assert params["user"] == "svc"


def test_statement_timeout_is_a_connection_option() -> None:
    """statement_timeout is sent in milliseconds as a libpq option on every connection."""
    settings = DatabaseSettings.model_validate({**POSTGRES, "statement_timeout": 1.5})
    assert _connect_params(settings)["options"] == "-c statement_timeout=1500"


def test_statement_timeout_keeps_options_from_the_url_query() -> None:
    """Options already given in the URL query are kept before the statement timeout."""
    settings = DatabaseSettings.model_validate(
        {**POSTGRES, "statement_timeout": 2, "query": {"options": "-c search_path=app"}}
    )
    options = _connect_params(settings)["options"]
    assert options == "-c search_path=app -c statement_timeout=2000"


def test_no_statement_timeout_sends_no_options() -> None:
    """Without statement_timeout no options parameter is added."""
    assert "options" not in _connect_params(DatabaseSettings.model_validate(POSTGRES))


def test_replica_engine_connects_to_the_replica_settings(tmp_path: Path) -> None:
    """replica=True builds the engine of settings.replica."""
    replica_path = tmp_path / "replica" / "r.sqlite3"
    settings = DatabaseSettings.model_validate(
        {"name": str(tmp_path / "p.sqlite3"), "replica": {"name": str(replica_path)}}
    )
    engine = create_sync_engine(settings, replica=True)
    try:
        assert engine.url.database == str(replica_path)
        assert replica_path.parent.is_dir()
    finally:
        engine.dispose()


def test_replica_engine_without_replica_settings_is_refused() -> None:
    """Asking for a replica engine when none is configured raises ValueError."""
    with pytest.raises(ValueError, match=r"settings\.replica is not set"):
        create_sync_engine(DatabaseSettings(), replica=True)
    with pytest.raises(ValueError, match=r"settings\.replica is not set"):
        create_async_engine(DatabaseSettings(), replica=True)
