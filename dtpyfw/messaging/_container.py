"""The messaging subsystem as a dependency-injector container.

``transport`` is a Resource built from the settings alone: ``memory``,
``redis`` (streams) or ``kafka``, or a
:class:`~dtpyfw.messaging.RoutingTransport` when ``channels`` routes some
message types elsewhere. Only the transports the settings name are built,
so a service without a ``kafka:`` section never touches Kafka.

The container takes the ``redis`` and ``kafka`` *settings*, not the redis
subsystem's client providers: ``ServiceContainer.validate()`` flags a
dependency on an unconfigured subsystem, and every service with messaging
but no Redis would fail it. Messaging therefore has its own Redis clients
(``redis_client`` / ``async_redis_client`` Resources, created on first use,
a pool apart from the cache's so blocking stream reads never starve cache
calls) and its own Kafka clients.

``bus`` and ``async_bus`` share the transport and the type ``registry`` but
keep their own subscriptions: subscribe a handler on the bus that publishes
to it. ``runner`` / ``async_runner`` are Factories of consumer runners over
those buses. ``idempotency`` is the processed-ids store: Redis when the
settings have a ``redis:`` section (or say so), else memory.

Resources close at ``shutdown_resources()``; once ``async_bus`` has used
Redis, that returns an awaitable (await it; ``ServiceContainer`` has
``ashutdown_resources()``) that closes the async client too.
"""

from __future__ import annotations

__all__ = ["MessagingContainer"]

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from dependency_injector import containers, providers

from dtpyfw.core.errors import NotConfigured
from dtpyfw.messaging._bus import AsyncMessageBus, MessageBus, Transport
from dtpyfw.messaging._idempotency import (
    IdempotencyStore,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
)
from dtpyfw.messaging._memory import MemoryTransport
from dtpyfw.messaging._message import TypeRegistry
from dtpyfw.messaging._routing import RoutingTransport
from dtpyfw.messaging._runner import AsyncRunner, Runner
from dtpyfw.messaging._serializer import Serializer, serializer_for
from dtpyfw.messaging._settings import MessagingSettings

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from dtpyfw.kafka._settings import KafkaSettings
    from dtpyfw.redis._settings import RedisSettings


def _redis_client(settings: RedisSettings | None) -> Iterator[redis.Redis | None]:
    """Messaging's own sync Redis client (None without a ``redis:`` section), closed at shutdown.

    Creating it connects nothing, so ``init_resources`` costs no round trip.
    """
    if settings is None:
        yield None
        return
    from dtpyfw.redis._client import create_client

    with create_client(settings) as client:
        yield client


async def _async_redis_client(
    settings: RedisSettings | None,
) -> AsyncIterator[redis.asyncio.Redis | None]:
    """Messaging's own asyncio Redis client, closed at async shutdown."""
    if settings is None:
        yield None
        return
    from dtpyfw.redis._client import create_async_client

    async with create_async_client(settings) as client:
        yield client


def _required_redis(settings: RedisSettings | None) -> RedisSettings:
    if settings is None:
        raise NotConfigured(
            "messaging uses Redis (transport, channels or idempotency) but the settings "
            "have no `redis:` section; add one (`redis: {}` connects to 127.0.0.1:6379)"
        )
    return settings


def _idempotency(
    settings: MessagingSettings,
    redis_settings: RedisSettings | None,
    client: Any,
    async_client: Any,
) -> IdempotencyStore:
    options = settings.idempotency
    backend = options.backend
    if backend == "auto":
        backend = "redis" if redis_settings is not None else "memory"
    if backend == "memory":
        return MemoryIdempotencyStore(options.ttl, lease=options.lease)
    _required_redis(redis_settings)  # fail now, not at the first message
    return RedisIdempotencyStore(
        client, async_client, ttl=options.ttl, lease=options.lease, prefix=options.prefix
    )


def _transport(
    settings: MessagingSettings,
    redis: _Redis,
    kafka_settings: KafkaSettings | None,
    serializer: Serializer,
    idempotency: Any,
) -> Iterator[Transport]:
    """The transport(s) the settings name, closed (flushed) at shutdown."""
    built: dict[str, Transport] = {}

    def build(name: str) -> Transport:
        if name not in built:
            built[name] = _build_one(
                name,
                settings=settings,
                redis=redis,
                kafka_settings=kafka_settings,
                serializer=serializer,
                idempotency=idempotency,
            )
        return built[name]

    try:
        default = build(settings.transport)
        routes = [(pattern, build(name)) for pattern, name in settings.channels.items()]
        yield RoutingTransport(default, routes) if routes else default
    finally:
        for transport in reversed(built.values()):
            transport.close()


def _build_one(
    name: str,
    *,
    settings: MessagingSettings,
    redis: _Redis,
    kafka_settings: KafkaSettings | None,
    serializer: Serializer,
    idempotency: Any,
) -> Transport:
    if name == "memory":
        skip = settings.idempotency.skip_processed
        return MemoryTransport(
            retry=settings.retry,
            serializer=serializer,
            idempotency=idempotency() if skip else None,
            skip_processed=skip,
        )
    if name == "redis":
        from dtpyfw.messaging._redis import RedisStreamsTransport

        redis_settings = _required_redis(redis.settings)
        return RedisStreamsTransport.from_settings(
            settings,
            redis.client,
            redis.async_client,
            serializer=serializer,
            socket_timeout=redis_settings.socket_timeout,
        )
    if name == "kafka":
        if kafka_settings is None:
            raise NotConfigured(
                "messaging uses the kafka transport but the settings have no `kafka:` "
                "section; add one with its bootstrap_servers"
            )
        from dtpyfw.messaging._kafka import KafkaTransport

        return KafkaTransport.from_settings(settings, kafka_settings, serializer=serializer)
    raise NotConfigured(f"unknown messaging transport {name!r}")


class _Redis:
    """The Redis settings and (lazy) client providers a transport may need."""

    def __init__(self, settings: RedisSettings | None, client: Any, async_client: Any) -> None:
        self.settings = settings
        self.client = client
        self.async_client = async_client


def _runner(bus: MessageBus, settings: MessagingSettings, idempotency: IdempotencyStore) -> Runner:
    store = idempotency if settings.idempotency.skip_processed else None
    return Runner.from_settings(bus, settings, idempotency=store)


def _async_runner(
    bus: AsyncMessageBus, settings: MessagingSettings, idempotency: IdempotencyStore
) -> AsyncRunner:
    store = idempotency if settings.idempotency.skip_processed else None
    return AsyncRunner.from_settings(bus, settings, idempotency=store)


def _ping(transport: Transport) -> None:
    """Raise when the transport cannot carry messages."""
    transport.ping()


async def _aping(transport: Transport) -> None:
    """Async twin of :func:`_ping`."""
    await transport.aping()


class MessagingContainer(containers.DeclarativeContainer):
    """Events and commands; provide ``settings`` (a MessagingSettings) when building it.

    ``redis_settings`` / ``kafka_settings`` (or None) are needed only by the
    transports that use them.
    """

    settings = providers.Dependency(instance_of=MessagingSettings)
    redis_settings: providers.Dependency[Any] = providers.Dependency(default=providers.Object(None))
    kafka_settings: providers.Dependency[Any] = providers.Dependency(default=providers.Object(None))

    # Declared first so that they close after everything that uses them.
    redis_client = providers.Resource(_redis_client, redis_settings)
    async_redis_client = providers.Resource(_async_redis_client, redis_settings)
    registry = providers.Singleton(TypeRegistry)
    serializer = providers.Singleton(serializer_for, settings.provided.serializer)
    idempotency = providers.Singleton(
        _idempotency,
        settings,
        redis_settings,
        redis_client.provider,
        async_redis_client.provider,
    )
    transport = providers.Resource(
        _transport,
        settings,
        providers.Factory(
            _Redis, redis_settings, redis_client.provider, async_redis_client.provider
        ),
        kafka_settings,
        serializer,
        idempotency.provider,
    )
    bus = providers.Singleton(
        MessageBus, transport, source=settings.provided.source, registry=registry
    )
    async_bus = providers.Singleton(
        AsyncMessageBus, transport, source=settings.provided.source, registry=registry
    )
    runner = providers.Factory(_runner, bus, settings, idempotency)
    async_runner = providers.Factory(_async_runner, async_bus, settings, idempotency)
    health_check = providers.Callable(_ping, transport)
    ahealth_check = providers.Callable(_aping, transport)
