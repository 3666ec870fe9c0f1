"""The Redis subsystem as a dependency-injector container.

``client`` is a sync-generator Resource and ``async_client`` an
async-generator Resource: each creates its client on first use and closes it,
with its pool, at ``container.shutdown_resources()`` (await that when
``async_client`` was initialised).

``cache`` (a :class:`~dtpyfw.redis.Cache`) and ``locks`` (a
:class:`~dtpyfw.redis.Locks`) are Singletons that hold the client
*providers*, not clients: resolving them connects nothing, and each client is
created on the first sync or async call that needs it.
"""

from __future__ import annotations

__all__ = ["RedisContainer"]

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from dtpyfw.redis._cache import Cache
from dtpyfw.redis._client import aping, create_async_client, create_client, ping
from dtpyfw.redis._lock import Locks
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
    """Redis clients, the cache and locks; provide ``settings`` (a RedisSettings).

    ``health_check`` PINGs through ``client`` and raises CacheError on failure;
    ``ahealth_check`` returns an awaitable doing the same through ``async_client``.
    """

    settings = providers.Dependency(instance_of=RedisSettings)
    client = providers.Resource(_client, settings)
    async_client = providers.Resource(_async_client, settings)
    cache = providers.Singleton(
        Cache.from_settings,
        settings.provided.cache,
        client=client.provider,
        async_client=async_client.provider,
    )
    locks = providers.Singleton(Locks, client.provider, async_client.provider)
    health_check = providers.Callable(ping, client)
    ahealth_check = providers.Callable(aping, async_client)
