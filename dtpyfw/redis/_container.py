"""The Redis subsystem as a dependency-injector container.

``client`` is a sync-generator Resource and ``async_client`` an
async-generator Resource: each creates its client on first use and closes it,
with its pool, at ``container.shutdown_resources()`` (await that when
``async_client`` was initialised).
"""

from __future__ import annotations

__all__ = ["RedisContainer"]

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from dtpyfw.redis._client import aping, create_async_client, create_client, ping
from dtpyfw.redis._settings import RedisSettings

if TYPE_CHECKING:
    import redis
    import redis.asyncio


def _client(settings: RedisSettings) -> Iterator[redis.Redis]:
    """Yield a sync client for ``settings`` and close it at shutdown."""
    with create_client(settings) as client:
        yield client


async def _async_client(settings: RedisSettings) -> AsyncIterator[redis.asyncio.Redis]:
    """Yield an asyncio client for ``settings`` and close it at shutdown."""
    async with create_async_client(settings) as client:
        yield client


class RedisContainer(containers.DeclarativeContainer):
    """Redis clients; provide ``settings`` (a RedisSettings) when building it.

    ``health_check`` PINGs through ``client`` and raises CacheError on failure;
    ``ahealth_check`` returns an awaitable doing the same through ``async_client``.
    """

    settings = providers.Dependency(instance_of=RedisSettings)
    client = providers.Resource(_client, settings)
    async_client = providers.Resource(_async_client, settings)
    health_check = providers.Callable(ping, client)
    ahealth_check = providers.Callable(aping, async_client)
