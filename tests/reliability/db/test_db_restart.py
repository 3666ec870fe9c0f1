"""A PostgreSQL restart under a warm pool: pre-ping recovers, and no connection leaks.

The server is a private one this module launches and restarts (``pg_ctl restart``
on its own data directory, as the unprivileged account that owns it): the
machine's shared server is never touched.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from dtpyfw.db import (
    AsyncDatabase,
    Database,
    DatabaseSettings,
    create_async_engine,
    create_sync_engine,
)
from dtpyfw.testing._launchers import ServiceHandle, _PostgresServer, find_postgres

APP = "dtpyfw-restart-test"
POOL = 3


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[ServiceHandle]:
    """A PostgreSQL server started for this module alone (stopped afterwards)."""
    with find_postgres(launch="always") as handle:
        yield handle


def _restart(handle: ServiceHandle) -> None:
    """``pg_ctl restart`` the launched server's data directory (fast shutdown, wait)."""
    server = handle._owner
    assert isinstance(server, _PostgresServer), "only a launched server can be restarted"
    result = server.run(
        server.pg_ctl, "-D", server.data, "-m", "fast", "-w", "-t", "30", "-l", server.log,
        "restart", timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, f"{result.stderr}\n{server.log_tail()}"


def _backends(handle: ServiceHandle) -> list[int]:
    """Server process ids of every connection our engines opened."""
    with psycopg.connect(handle.url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APP,)
        ).fetchall()
    return sorted(row[0] for row in rows)


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        threading.Event().wait(0.02)


def _pool(engine: Engine | AsyncEngine) -> QueuePool:
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return pool


async def test_pre_ping_survives_a_restart_without_leaking(private_postgres: ServiceHandle) -> None:
    """After a restart the next sync and async requests succeed; every backend is accounted for."""
    url = private_postgres.url.replace("postgresql://", "postgresql+psycopg://", 1)
    settings = DatabaseSettings(
        url=f"{url}?application_name={APP}", pool_size=POOL, max_overflow=0, pool_pre_ping=True
    )
    engine = create_sync_engine(settings)
    aengine = create_async_engine(settings)
    database, adatabase = Database(engine), AsyncDatabase(aengine)
    pid = text("SELECT pg_backend_pid()")
    try:
        with contextlib.ExitStack() as stack:  # fill the sync pool with live connections
            sessions = [stack.enter_context(database.session()) for _ in range(POOL)]
            before = {s.execute(pid).scalar_one() for s in sessions}
        async with adatabase.session() as asession:
            before.add((await asession.execute(pid)).scalar_one())
        assert _backends(private_postgres) == sorted(before)

        _restart(private_postgres)
        assert _backends(private_postgres) == []

        with contextlib.ExitStack() as stack:  # every pooled connection is stale: all replaced
            sessions = [stack.enter_context(database.session()) for _ in range(POOL)]
            after = {s.execute(pid).scalar_one() for s in sessions}
        async with adatabase.session() as asession:
            after.add((await asession.execute(pid)).scalar_one())
        assert not after & before
        assert _pool(engine).checkedout() == 0
        assert _pool(aengine).checkedout() == 0
        idle = _pool(engine).checkedin() + _pool(aengine).checkedin()
        assert len(_backends(private_postgres)) == idle == POOL + 1
    finally:
        engine.dispose()
        await aengine.dispose()
    _wait_for(lambda: _backends(private_postgres) == [])
