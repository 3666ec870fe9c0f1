"""Redis clients, a cache decorator and distributed locks, from settings.

Resolve ``client`` / ``async_client`` / ``cache`` / ``locks`` from
:class:`RedisContainer`, or call :func:`create_client` /
:func:`create_async_client`. Needs the ``redis`` extra
(``pip install 'dtpyfw[redis]'``); importing this package does not.
"""

from dtpyfw.redis._cache import Cache, CachedFunction, cached
from dtpyfw.redis._client import create_async_client, create_client
from dtpyfw.redis._container import RedisContainer
from dtpyfw.redis._lock import Lock, LockLost, Locks, LockTimeout
from dtpyfw.redis._settings import CacheSettings, RedisSettings

__all__ = [
    "Cache",
    "CacheSettings",
    "CachedFunction",
    "Lock",
    "LockLost",
    "LockTimeout",
    "Locks",
    "RedisContainer",
    "RedisSettings",
    "cached",
    "create_async_client",
    "create_client",
]
