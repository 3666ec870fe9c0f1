"""Distributed locks against a real redis-server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio

from dtpyfw.redis import LockLost, Locks, LockTimeout, RedisContainer, RedisSettings


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client of the test database."""
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def locks(client: redis.Redis) -> Locks:
    """Locks over the sync client, waiting at most 0.2 s by default."""
    return Locks(client, default_timeout=0.2)


def test_lock_is_exclusive_until_released(locks: Locks, client: redis.Redis) -> None:
    """A held lock cannot be taken again; once released it can."""
    with locks("job", ttl=5) as held:
        assert held.held
        assert 4000 < client.pttl("lock:job") <= 5000
        assert locks("job").acquire(timeout=0) is False
        with pytest.raises(LockTimeout, match="lock:job"):
            locks("job").__enter__()
    assert not held.held
    assert client.exists("lock:job") == 0
    other = locks("job")
    assert other.acquire(timeout=0)
    other.release()


def test_expired_holder_cannot_release_the_next_holders_lock(
    locks: Locks, client: redis.Redis
) -> None:
    """A holder whose lock expired gets LockLost and leaves the new holder's lock alone."""
    first = locks("report", ttl=0.05)
    assert first.acquire()
    deadline = time.monotonic() + 5
    while client.exists("lock:report"):
        assert time.monotonic() < deadline, "the lock never expired"
        time.sleep(0.01)
    second = locks("report", ttl=5)
    assert second.acquire(timeout=0)
    with pytest.raises(LockLost, match="expired"):
        first.release()
    assert client.exists("lock:report") == 1
    second.release()


def test_extend_pushes_the_expiry_out(locks: Locks, client: redis.Redis) -> None:
    """extend() renews a held lock; extending a lost lock raises LockLost once."""
    lock = locks("long", ttl=1)
    with lock:
        lock.extend(30)
        assert client.pttl("lock:long") > 20_000
        client.delete("lock:long")
        with pytest.raises(LockLost):
            lock.extend()
    assert not lock.held


def test_lock_lost_inside_the_block_raises_at_exit(locks: Locks, client: redis.Redis) -> None:
    """A block that ran past its lock's expiry ends with LockLost."""
    with pytest.raises(LockLost), locks("y", ttl=5):
        client.delete("lock:y")


def test_block_exception_wins_over_lost_lock(locks: Locks, client: redis.Redis) -> None:
    """When the block raised, an expired lock does not hide that exception."""

    def body() -> None:
        with locks("x", ttl=5):
            client.delete("lock:x")
            raise RuntimeError("the block's own")

    with pytest.raises(RuntimeError, match="the block's own"):
        body()


@pytest.fixture
async def aclient(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """An asyncio client of the test database."""
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_async_with(aclient: redis.asyncio.Redis) -> None:
    """async with takes and releases the lock through the async client."""
    locks = Locks(async_client=aclient, default_timeout=0)
    async with locks("a", ttl=5) as lock:
        assert await aclient.exists("lock:a") == 1
        assert await locks("a").aacquire() is False
        await lock.aextend(10)
        assert await aclient.pttl("lock:a") > 9000
    assert await aclient.exists("lock:a") == 0


def test_container_locks(redis_url: str) -> None:
    """redis.locks resolves without connecting and locks through the container's client."""
    container = RedisContainer(settings=RedisSettings.model_validate({"url": redis_url}))
    try:
        locks = container.locks()
        with locks("c", ttl=1):
            assert container.client().exists("lock:c") == 1
    finally:
        container.shutdown_resources()
