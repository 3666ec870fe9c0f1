"""The Redis cache decorator against a real redis-server."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio
from pydantic import BaseModel
from redis.backoff import NoBackoff
from redis.retry import Retry

from dtpyfw.core.errors import CacheError
from dtpyfw.redis import Cache, RedisContainer, RedisSettings, cached


class Profile(BaseModel):
    """A cached return value."""

    user_id: int
    name: str


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client of the test database."""
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
async def aclient(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """An asyncio client of the test database."""
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def cache(client: redis.Redis) -> Cache:
    """A cache over the sync client."""
    return Cache(client, namespace="t", version="1")


def wait_until(condition: object, timeout: float = 5.0) -> None:
    """Poll ``condition`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.005)


def test_second_call_is_served_from_redis(cache: Cache, client: redis.Redis) -> None:
    """The function runs once; the model comes back as the model, under a namespaced key."""
    calls: list[int] = []

    @cache.cached(ttl=60)
    def profile(user_id: int, *, loud: bool = False) -> Profile:
        calls.append(user_id)
        return Profile(user_id=user_id, name="ada")

    first = profile(7)
    assert profile(7) == first
    assert profile(user_id=7, loud=False) == first
    assert isinstance(profile(7), Profile)
    assert calls == [7]
    key = profile.key(7)
    assert key.startswith("t:1:")
    assert 59_000 < client.pttl(key) <= 60_000
    profile(8)
    assert calls == [7, 8]


def test_none_is_cached_and_invalidate_deletes(cache: Cache) -> None:
    """A None result is a value like any other; invalidate() forgets one call."""
    calls: list[int] = []

    @cache.cached()
    def lookup(n: int) -> int | None:
        calls.append(n)
        return None

    assert lookup(1) is None
    assert lookup(1) is None
    assert calls == [1]
    lookup.invalidate(1)
    lookup(1)
    assert calls == [1, 1]


def test_version_bump_invalidates_everything(client: redis.Redis) -> None:
    """A new version reads none of the old keys."""
    calls: list[str] = []

    def compute(name: str) -> str:
        calls.append(name)
        return name.upper()

    old = Cache(client, namespace="v", version="1").cached()(compute)
    new = Cache(client, namespace="v", version="2").cached()(compute)
    assert old("a") == "A"
    assert old("a") == "A"
    assert new("a") == "A"
    assert calls == ["a", "a"]


def test_key_template_and_callable(cache: Cache, client: redis.Redis) -> None:
    """key= as a template or a function names the Redis key."""

    @cache.cached(key="user:{user_id}")
    def by_template(user_id: int) -> int:
        return user_id * 2

    @cache.cached(key=lambda user_id: f"u{user_id}")
    def by_function(user_id: int) -> int:
        return user_id * 3

    assert by_template(4) == 8
    assert by_function(4) == 12
    assert client.exists("t:1:user:4", "t:1:u4") == 2


def test_large_values_are_compressed(cache: Cache, client: redis.Redis) -> None:
    """Values over compress_min_size are stored zlib-compressed and read back intact."""

    @cache.cached()
    def big() -> list[str]:
        return ["x" * 100] * 100

    value = big()
    raw = client.get(big.key())
    assert raw is not None
    assert raw[:1] == b"\x01"
    assert len(raw) < 1000
    assert big() == value


def test_concurrent_callers_in_one_process_compute_once(cache: Cache) -> None:
    """Threads asking for the same missing key share one computation."""
    release = threading.Event()
    calls: list[int] = []
    results: list[int] = []

    @cache.cached()
    def slow(n: int) -> int:
        calls.append(n)
        release.wait(5)
        return n + 1

    threads = [threading.Thread(target=lambda: results.append(slow(1))) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: calls)
    release.set()
    for thread in threads:
        thread.join(5)
    assert calls == [1]
    assert results == [2] * 8


def test_another_process_holding_the_claim_is_waited_for(cache: Cache, client: redis.Redis) -> None:
    """A key claimed elsewhere is waited for: the caller takes that value, computing nothing."""
    calls: list[int] = []

    @cache.cached()
    def value(n: int) -> int:
        calls.append(n)
        return -1

    key = value.key(5)
    client.set(key, b"\x02someone-else", px=5000)  # another process is computing it
    results: list[int] = []
    caller = threading.Thread(target=lambda: results.append(value(5)))
    caller.start()
    client.set(key, b"\x0042", px=5000)  # what the other process stores
    caller.join(5)
    assert results == [42]
    assert calls == []


def test_an_abandoned_claim_expires_and_a_failure_gives_the_claim_back(
    cache: Cache, client: redis.Redis
) -> None:
    """A claim whose holder died expires; a computation that raises releases its claim."""
    attempts: list[int] = []

    @cache.cached()
    def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) == 1:
            raise RuntimeError("first try fails")
        return n * 10

    key = flaky.key(3)
    client.set(key, b"\x02dead-holder", px=50)
    with pytest.raises(RuntimeError, match="first try fails"):
        flaky(3)
    assert client.exists(key) == 0
    assert flaky(3) == 30
    assert flaky(3) == 30
    assert attempts == [3, 3]


async def test_async_functions_are_cached(aclient: redis.asyncio.Redis) -> None:
    """Async functions use the async client; concurrent awaits share one computation."""
    cache = Cache(async_client=lambda: aclient, namespace="a")
    calls: list[int] = []

    @cache.cached(ttl=30)
    async def profile(user_id: int) -> Profile:
        calls.append(user_id)
        await asyncio.sleep(0.01)
        return Profile(user_id=user_id, name="grace")

    results = await asyncio.gather(*(profile(3) for _ in range(5)))
    assert {r.name for r in results} == {"grace"}
    assert await profile(3) == results[0]
    assert calls == [3]
    await profile.ainvalidate(3)
    await profile(3)
    assert calls == [3, 3]


def test_redis_down_calls_through_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """An unreachable Redis costs one WARNING per outage; every call still gets its value."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = redis.Redis(port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    cache = Cache(client, retry_after=60)
    calls: list[int] = []

    @cache.cached()
    def compute(n: int) -> int:
        calls.append(n)
        return n

    with caplog.at_level(logging.WARNING, logger="dtpyfw.redis"):
        assert [compute(1), compute(1), compute(2)] == [1, 1, 2]
    assert calls == [1, 1, 2]
    assert len([r for r in caplog.records if r.name == "dtpyfw.redis"]) == 1
    strict = Cache(client, on_error="raise").cached()(lambda: 1)
    with pytest.raises(CacheError, match="unavailable"):
        strict()
    client.close()


def test_container_cache_and_lazy_provider(redis_url: str) -> None:
    """redis.cache from the container; @cached(cache=provider) resolves it at the first call."""
    container = RedisContainer(
        settings=RedisSettings.model_validate({"url": redis_url, "cache": {"namespace": "svc"}})
    )
    try:
        calls: list[int] = []

        @cached(ttl=10, cache=container.cache)
        def double(n: int) -> int:
            calls.append(n)
            return n * 2

        assert double(2) == double(2) == 4
        assert calls == [2]
        assert double.key(2).startswith("svc:1:")
        assert container.cache() is container.cache()
    finally:
        container.shutdown_resources()
