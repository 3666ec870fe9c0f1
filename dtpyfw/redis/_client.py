"""Redis clients built from :class:`~dtpyfw.redis.RedisSettings`, and their PING.

redis-py is the ``redis`` extra: it is imported when a client is created, so
``import dtpyfw.redis`` works without it and creating a client without it
raises :class:`~dtpyfw.core.errors.DependencyMissing` naming
``pip install 'dtpyfw[redis]'``.

Every client:

- connects to ``settings.connection_url()``;
- draws from a blocking pool of ``max_connections`` (a caller waits up to
  ``socket_timeout`` for a free connection instead of failing at once);
- retries commands on connection errors and timeouts ``retries`` times with
  exponential backoff;
- over ``rediss://`` verifies the server certificate and host name unless
  ``tls_verify`` is off, trusting ``tls_ca_file`` when given;
- keeps idle pooled connections checked (``health_check_interval``) and TCP
  keepalive on (``socket_keepalive``);
- returns ``bytes`` (``decode_responses=False``).
"""

from __future__ import annotations

__all__ = ["aping", "create_async_client", "create_client", "ping"]

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from dtpyfw.core._extras import require
from dtpyfw.core.errors import CacheError
from dtpyfw.redis._settings import RedisSettings

if TYPE_CHECKING:
    import redis
    import redis.asyncio


def create_client(settings: RedisSettings) -> redis.Redis:
    """A sync ``redis.Redis`` for ``settings``; close it (or use it in ``with``) when done."""
    redis_module = require("redis", "redis")
    backoff = require("redis.backoff", "redis")
    retry = require("redis.retry", "redis")
    pool = redis_module.BlockingConnectionPool.from_url(
        settings.connection_url(),
        **_options(
            settings,
            retry=retry.Retry(backoff.ExponentialBackoff(), settings.retries),
            retry_on_error=[
                redis_module.exceptions.ConnectionError,
                redis_module.exceptions.TimeoutError,
            ],
        ),
    )
    client: redis.Redis = redis_module.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # close() disconnects the pool it owns
    return client


def create_async_client(settings: RedisSettings) -> redis.asyncio.Redis:
    """An asyncio ``redis.asyncio.Redis`` for ``settings``; ``await client.aclose()`` when done."""
    redis_module = require("redis", "redis")
    asyncio_module = require("redis.asyncio", "redis")
    backoff = require("redis.backoff", "redis")
    retry = require("redis.asyncio.retry", "redis")
    pool = asyncio_module.BlockingConnectionPool.from_url(
        settings.connection_url(),
        **_options(
            settings,
            retry=retry.Retry(backoff.ExponentialBackoff(), settings.retries),
            retry_on_error=[
                redis_module.exceptions.ConnectionError,
                redis_module.exceptions.TimeoutError,
            ],
        ),
    )
    client: redis.asyncio.Redis = asyncio_module.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # aclose() disconnects the pool it owns
    return client


def ping(client: redis.Redis) -> None:
    """PING the server; any failure raises CacheError chained to redis-py's error."""
    redis_module = require("redis", "redis")
    try:
        answer = client.ping()
    except (redis_module.RedisError, OSError) as exc:
        raise _ping_failed(client, exc) from exc
    if answer is not True:
        raise CacheError(f"Redis PING to {_where(client)} answered {answer!r}")


async def aping(client: redis.asyncio.Redis) -> None:
    """Async twin of :func:`ping`."""
    redis_module = require("redis", "redis")
    try:
        # redis-py types ping() for both twins at once; the asyncio client's is awaitable.
        answer = await cast("Awaitable[object]", client.ping())
    except (redis_module.RedisError, OSError) as exc:
        raise _ping_failed(client, exc) from exc
    if answer is not True:
        raise CacheError(f"Redis PING to {_where(client)} answered {answer!r}")


def _options(settings: RedisSettings, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "max_connections": settings.max_connections,
        # How long a caller waits for a free pooled connection.
        "timeout": settings.socket_timeout,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "socket_keepalive": settings.socket_keepalive,
        "health_check_interval": settings.health_check_interval,
        "decode_responses": False,
        **extra,
    }
    if urlsplit(settings.connection_url()).scheme == "rediss":
        options["ssl_cert_reqs"] = "required" if settings.tls_verify else "none"
        options["ssl_check_hostname"] = settings.tls_verify
        if settings.tls_ca_file is not None:
            options["ssl_ca_certs"] = settings.tls_ca_file
    return options


def _ping_failed(client: redis.Redis | redis.asyncio.Redis, exc: BaseException) -> CacheError:
    return CacheError(f"Redis PING to {_where(client)} failed: {type(exc).__name__}: {exc}")


def _where(client: redis.Redis | redis.asyncio.Redis) -> str:
    """host:port/db of the client, never its credentials."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
