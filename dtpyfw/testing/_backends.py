"""pytest fixtures for tests that talk to a real PostgreSQL or Redis.

Session fixtures find (or start) one server per backend with
:mod:`dtpyfw.testing._launchers`; function fixtures hand each test an isolated
slice of it:

* ``postgres_url`` / ``postgres_dsn``: a fresh database, dropped afterwards;
* ``redis_url``: the logical database ``redis_test_db`` (15), flushed before
  and after. Override ``redis_test_db`` in a conftest to reserve another one.

A backend that cannot be found skips the tests that need it, except when the
``CI`` environment variable is ``true``, ``1`` or ``yes``: there it fails them,
because a CI run that silently skipped its integration tests proves nothing.
"""

from __future__ import annotations

__all__ = [
    "postgres_dsn",
    "postgres_service",
    "postgres_url",
    "redis_service",
    "redis_test_db",
    "redis_url",
]

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

from dtpyfw.core._extras import require
from dtpyfw.testing._launchers import (
    BackendUnavailable,
    ServiceHandle,
    find_postgres,
    find_redis,
)

_DATABASE_PREFIX = "dtpyfw_t_"


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[ServiceHandle]:
    """The PostgreSQL server for this test session (see :func:`find_postgres`)."""
    with _find_or_skip(find_postgres) as handle:
        yield handle


@pytest.fixture(scope="session")
def redis_service() -> Iterator[ServiceHandle]:
    """The Redis server for this test session (see :func:`find_redis`)."""
    with _find_or_skip(find_redis) as handle:
        yield handle


@pytest.fixture
def postgres_dsn(postgres_service: ServiceHandle) -> Iterator[str]:
    """A ``postgresql://`` URL of a fresh, empty database, dropped after the test."""
    with _fresh_database(postgres_service.url) as dsn:
        yield dsn


@pytest.fixture
def postgres_url(postgres_dsn: str) -> str:
    """The ``postgres_dsn`` database as a SQLAlchemy URL (``postgresql+psycopg://``)."""
    return postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def redis_test_db() -> int:
    """The Redis logical database reserved for tests; ``redis_url`` flushes it."""
    return 15


@pytest.fixture
def redis_url(redis_service: ServiceHandle, redis_test_db: int) -> Iterator[str]:
    """A URL of the ``redis_test_db`` database, empty at the start, flushed at the end."""
    url = _with_path(redis_service.url, f"/{redis_test_db}")
    _flush_redis_db(url)
    try:
        yield url
    finally:
        _flush_redis_db(url)


def _find_or_skip(find: Callable[[], ServiceHandle]) -> ServiceHandle:
    try:
        return find()
    except BackendUnavailable as exc:
        reason = str(exc)
    # Outside the except block, so the report shows the reason, not a chained traceback.
    if _running_in_ci():
        pytest.fail(f"{reason}\n(CI is set: a missing backend fails the run)", pytrace=False)
    pytest.skip(reason)


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@contextmanager
def _fresh_database(server_url: str) -> Iterator[str]:
    """Create a uniquely named database on ``server_url``; drop it on exit."""
    require("psycopg", "postgres")
    import psycopg
    from psycopg import sql

    name = f"{_DATABASE_PREFIX}{secrets.token_hex(8)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_path(server_url, f"/{name}")
    finally:
        # FORCE (PostgreSQL 13+) ends sessions a test left open, e.g. a pool.
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _flush_redis_db(url: str) -> None:
    require("redis", "redis")
    import redis

    with redis.Redis.from_url(url) as client:
        client.flushdb()


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=path))
