"""The Kafka subsystem as a dependency-injector container.

``producer`` / ``async_producer`` are Resources: created on first use
(creating the kafka-python client is deferred further, to the first
publish), flushed and closed at shutdown. ``consumer`` is a Factory: call
it with a group id, ``container.kafka.consumer("billing")``, and close what
you get. ``health_check`` asks a broker for its version through the
producer's connection.
"""

from __future__ import annotations

__all__ = ["KafkaContainer"]

from collections.abc import AsyncIterator, Iterator

from dependency_injector import containers, providers

from dtpyfw.kafka._consumer import Consumer
from dtpyfw.kafka._producer import AsyncProducer, Producer
from dtpyfw.kafka._settings import KafkaSettings


def _producer(settings: KafkaSettings) -> Iterator[Producer]:
    """Yield a producer; flush and close it at shutdown."""
    with Producer(settings) as producer:
        yield producer


async def _async_producer(settings: KafkaSettings) -> AsyncIterator[AsyncProducer]:
    """Yield an async producer; flush and close it at async shutdown."""
    async with AsyncProducer.from_settings(settings) as producer:
        yield producer


def _ping(producer: Producer) -> None:
    """Raise MessagingError when no broker answers."""
    producer.ping()


class KafkaContainer(containers.DeclarativeContainer):
    """Kafka clients; provide ``settings`` (a KafkaSettings) when building it."""

    settings = providers.Dependency(instance_of=KafkaSettings)
    producer = providers.Resource(_producer, settings)
    async_producer = providers.Resource(_async_producer, settings)
    consumer = providers.Factory(Consumer, settings)
    health_check = providers.Callable(_ping, producer)
