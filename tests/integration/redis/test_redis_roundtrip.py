"""RedisContainer against a real redis-server: PING, SET/GET, and an unreachable server."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from dtpyfw.core.errors import CacheError
from dtpyfw.redis import RedisContainer, RedisSettings


@pytest.fixture
def redis_settings(redis_url: str) -> RedisSettings:
    """Settings for the test database of the Redis the dtpyfw plugin found or started."""
    return RedisSettings.model_validate(
        {"url": redis_url, "connect_timeout": 2, "socket_timeout": 5}
    )


@pytest.fixture
def container(redis_settings: RedisSettings) -> Iterator[RedisContainer]:
    """A RedisContainer whose sync resources are shut down after the test."""
    container = RedisContainer(settings=redis_settings)
    yield container
    container.shutdown_resources()


@pytest.fixture
async def acontainer(redis_settings: RedisSettings) -> AsyncIterator[RedisContainer]:
    """A RedisContainer whose async resources are shut down after the test."""
    container = RedisContainer(settings=redis_settings)
    yield container
    await container.shutdown_resources()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unique_key() -> str:
    """A key no other test run uses."""
    return f"dtpyfw-test:{uuid.uuid4().hex}"


def test_health_check_pings(container: RedisContainer) -> None:
    """health_check PINGs the server through the sync client."""
    container.health_check()


def test_set_get_round_trip(container: RedisContainer) -> None:
    """SET then GET returns the bytes stored."""
    client = container.client()
    assert container.client() is client
    key = unique_key()
    try:
        assert client.set(key, b"\x00value\xff", ex=60) is True
        assert client.get(key) == b"\x00value\xff"
    finally:
        client.delete(key)


def test_shutdown_closes_the_client(redis_settings: RedisSettings) -> None:
    """shutdown_resources closes the pool; the next resolve builds a fresh client."""
    container = RedisContainer(settings=redis_settings)
    first = container.client()
    first.ping()
    container.shutdown_resources()
    second = container.client()
    try:
        assert second is not first
        assert second.ping() is True
    finally:
        container.shutdown_resources()


async def test_async_health_check_and_round_trip(acontainer: RedisContainer) -> None:
    """ahealth_check PINGs through the async client; SET/GET round-trips."""
    await acontainer.ahealth_check()
    client = await acontainer.async_client()
    key = unique_key()
    try:
        await client.set(key, b"async", ex=60)
        assert await client.get(key) == b"async"
    finally:
        await client.delete(key)


def test_closed_port_fails_health_check_in_time(closed_port: int) -> None:
    """PING to a port nobody listens on raises CacheError within the configured timeouts."""
    settings = RedisSettings(port=closed_port, connect_timeout=0.5, socket_timeout=0.5, retries=2)
    container = RedisContainer(settings=settings)
    started = time.monotonic()
    try:
        with pytest.raises(CacheError, match=f"127.0.0.1:{closed_port}/0") as info:
            container.health_check()
    finally:
        container.shutdown_resources()
    elapsed = time.monotonic() - started
    assert elapsed < settings.connect_timeout * (settings.retries + 1) + 1.0
    assert info.value.__cause__ is not None


async def test_closed_port_fails_async_health_check_in_time(closed_port: int) -> None:
    """The async PING to a closed port raises CacheError within the configured timeouts."""
    settings = RedisSettings(port=closed_port, connect_timeout=0.5, socket_timeout=0.5, retries=2)
    container = RedisContainer(settings=settings)
    started = time.monotonic()
    try:
        with pytest.raises(CacheError, match="failed"):
            await container.ahealth_check()
    finally:
        await container.shutdown_resources()
    assert time.monotonic() - started < settings.connect_timeout * (settings.retries + 1) + 1.0


def test_credentials_never_appear_in_errors(closed_port: int) -> None:
    """The CacheError of a failed PING names the server but not the password."""
    settings = RedisSettings(port=closed_port, password="hunter2-secret", retries=0)
    container = RedisContainer(settings=settings)
    try:
        with pytest.raises(CacheError) as info:
            container.health_check()
    finally:
        container.shutdown_resources()
    assert "hunter2-secret" not in str(info.value)
