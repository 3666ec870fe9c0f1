"""Redis clients from settings: URL or parts, TLS, a bounded pool, timeouts and retries.

Resolve ``client`` / ``async_client`` from :class:`RedisContainer`, or call
:func:`create_client` / :func:`create_async_client`. Needs the ``redis``
extra (``pip install 'dtpyfw[redis]'``); importing this package does not.
"""

from dtpyfw.redis._client import create_async_client, create_client
from dtpyfw.redis._container import RedisContainer
from dtpyfw.redis._settings import RedisSettings

__all__ = [
    "RedisContainer",
    "RedisSettings",
    "create_async_client",
    "create_client",
]
