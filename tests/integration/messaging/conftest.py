"""A redis-server of the messaging tests' own, so other test runs cannot flush their streams."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from dtpyfw.testing import ServiceHandle, find_redis
from dtpyfw.testing._backends import _find_or_skip


@pytest.fixture(scope="session")
def messaging_redis_service() -> Iterator[ServiceHandle]:
    """A private redis-server for this session's messaging tests."""
    with _find_or_skip(lambda: find_redis(launch="always")) as handle:
        yield handle


@pytest.fixture
def messaging_redis_url(messaging_redis_service: ServiceHandle) -> Iterator[str]:
    """Its database 0, empty at the start of the test and flushed at the end."""
    url = messaging_redis_service.url
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    try:
        yield url
    finally:
        with redis.Redis.from_url(url) as client:
            client.flushdb()
