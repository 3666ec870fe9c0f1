"""200 concurrent request scopes on a pool of 10: no deadlock, every connection returned."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import QueuePool

from dtpyfw.core.scope import ascope
from dtpyfw.db import DatabaseContainer, DatabaseSettings

REQUESTS = 200
POOL = 10


class RequestFailedError(Exception):
    """An application error some requests raise after using their session."""


async def test_many_async_scopes_share_a_small_pool(postgres_url: str) -> None:
    """Every request finishes, failed ones too; at most 10 connections are ever lent at once."""
    settings = DatabaseSettings(url=postgres_url, pool_size=POOL, max_overflow=0, pool_timeout=60)
    container: Any = DatabaseContainer(settings=settings)
    engine: AsyncEngine = await container.async_engine()
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    lent = {"now": 0, "peak": 0}

    def checkout(*_: Any) -> None:
        lent["now"] += 1
        lent["peak"] = max(lent["peak"], lent["now"])

    def checkin(*_: Any) -> None:
        lent["now"] -= 1

    event.listen(engine.sync_engine, "checkout", checkout)
    event.listen(engine.sync_engine, "checkin", checkin)

    async def request(number: int) -> int:
        async with ascope():
            session: AsyncSession = await container.async_session()
            value = (await session.execute(text("SELECT :n"), {"n": number})).scalar_one()
            await asyncio.sleep(0)  # yield while holding the connection
            if number % 10 == 0:
                raise RequestFailedError(number)
            return int(value)

    try:
        async with asyncio.timeout(60):
            results = await asyncio.gather(
                *(request(n) for n in range(REQUESTS)), return_exceptions=True
            )
        failed = [r for r in results if isinstance(r, RequestFailedError)]
        answered = [r for r in results if isinstance(r, int)]
        assert len(failed) == REQUESTS // 10
        assert sorted(answered) == [n for n in range(REQUESTS) if n % 10]
        assert pool.checkedout() == 0
        assert lent == {"now": 0, "peak": POOL}
    finally:
        await container.shutdown_resources()
