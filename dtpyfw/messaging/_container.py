"""The messaging subsystem as a dependency-injector container.

``transport`` is a ``Selector`` on ``settings.transport`` (only ``memory``
for now; Redis and Kafka join it with their extras). ``bus`` and
``async_bus`` share the transport but keep their own subscriptions:
subscribe a handler on the bus that publishes to it.
"""

from __future__ import annotations

__all__ = ["MessagingContainer"]

from dependency_injector import containers, providers

from dtpyfw.messaging._bus import AsyncMessageBus, MessageBus, Transport
from dtpyfw.messaging._memory import MemoryTransport
from dtpyfw.messaging._message import TypeRegistry
from dtpyfw.messaging._settings import MessagingSettings


def _ping(transport: Transport) -> None:
    """Raise when the transport cannot carry messages."""
    transport.ping()


async def _aping(transport: Transport) -> None:
    """Async twin of :func:`_ping`."""
    await transport.aping()


class MessagingContainer(containers.DeclarativeContainer):
    """Events and commands; provide ``settings`` (a MessagingSettings) when building it."""

    settings = providers.Dependency(instance_of=MessagingSettings)
    transport = providers.Selector(
        settings.provided.transport,
        memory=providers.Singleton(MemoryTransport, retry=settings.provided.retry),
    )
    registry = providers.Singleton(TypeRegistry)
    bus = providers.Singleton(MessageBus, transport, source=settings.provided.source)
    async_bus = providers.Singleton(AsyncMessageBus, transport, source=settings.provided.source)
    health_check = providers.Callable(_ping, transport)
    ahealth_check = providers.Callable(_aping, transport)
