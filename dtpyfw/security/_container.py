"""The security subsystem as a dependency-injector container.

``password_hasher``, ``token_service`` and ``api_keys`` are Singletons built
from the ``security`` section; ``keys`` is a Resource, so a key that does not
load fails ``init_resources`` at start rather than the first request.
``deny_list`` follows ``security.deny_list``: ``memory``, or ``redis``
through the ``redis`` section's connection settings.
The choice is made from the settings, never by trying a connection, and the
Redis deny-list opens its own clients on first use: the container takes the
``redis`` *settings* (not the redis subsystem's providers), so a service
without a ``redis:`` section composes, validates and starts as before.
``close_deny_list`` / ``aclose_deny_list`` are Resources whose only job is
closing those clients at ``shutdown_resources`` / ``ashutdown_resources``.
"""

from __future__ import annotations

__all__ = ["SecurityContainer"]

from collections.abc import AsyncIterator, Iterator
from typing import Any

from dependency_injector import containers, providers

from dtpyfw.security._apikeys import ApiKeys
from dtpyfw.security._denylist import MemoryDenyList, RedisDenyList, create_deny_list
from dtpyfw.security._jwks import JwksClient
from dtpyfw.security._keys import KeySet
from dtpyfw.security._passwords import PasswordHasher
from dtpyfw.security._settings import SecuritySettings
from dtpyfw.security._tokens import TokenService


def _close(deny_list: MemoryDenyList | RedisDenyList) -> Iterator[None]:
    """Close the deny-list's sync client at shutdown."""
    try:
        yield
    finally:
        deny_list.close()


async def _aclose(deny_list: MemoryDenyList | RedisDenyList) -> AsyncIterator[None]:
    """Close the deny-list's clients, async one included, at async shutdown."""
    try:
        yield
    finally:
        await deny_list.aclose()


def _ping(deny_list: MemoryDenyList | RedisDenyList) -> None:
    """The deny-list answers (Redis PING; always true in memory)."""
    deny_list.ping()


async def _aping(deny_list: MemoryDenyList | RedisDenyList) -> None:
    """Async twin of :func:`_ping`."""
    await deny_list.aping()


def _token_service(
    settings: SecuritySettings,
    keys: KeySet,
    deny_list: MemoryDenyList | RedisDenyList,
    jwks: JwksClient | None,
) -> TokenService:
    return TokenService.from_settings(settings, keys=keys, deny_list=deny_list, jwks=jwks)


class SecurityContainer(containers.DeclarativeContainer):
    """Passwords, tokens, API keys and the deny-list; provide ``settings`` when building it.

    ``redis_settings`` (a :class:`~dtpyfw.redis.RedisSettings` or None) is needed
    only when ``settings.deny_list`` is ``redis``.
    """

    settings = providers.Dependency(instance_of=SecuritySettings)
    redis_settings: providers.Dependency[Any] = providers.Dependency(default=providers.Object(None))

    password_hasher = providers.Singleton(PasswordHasher.from_settings, settings)
    # A Resource so that keys (and PEM files) load at start, not at the first request.
    keys = providers.Resource(KeySet.from_settings, settings)
    jwks_client = providers.Singleton(JwksClient.from_settings, settings)
    deny_list = providers.Singleton(create_deny_list, settings, redis_settings)
    token_service = providers.Singleton(_token_service, settings, keys, deny_list, jwks_client)
    api_keys = providers.Singleton(ApiKeys.from_settings, settings)

    close_deny_list = providers.Resource(_close, deny_list)
    aclose_deny_list = providers.Resource(_aclose, deny_list)
    health_check = providers.Callable(_ping, deny_list)
    ahealth_check = providers.Callable(_aping, deny_list)
