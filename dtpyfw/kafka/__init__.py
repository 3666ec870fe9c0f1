"""Kafka producers, consumers and topics from settings (kafka-python 2.3.x, the ``kafka`` extra).

Resolve ``producer`` / ``async_producer`` / ``consumer`` from
:class:`KafkaContainer`, or build :class:`Producer` / :class:`Consumer` from
a :class:`KafkaSettings`. ``import dtpyfw.kafka`` works without kafka-python;
creating a client without it raises DependencyMissing naming
``pip install 'dtpyfw[kafka]'``. Messaging over Kafka is
``messaging.transport: kafka`` (see :mod:`dtpyfw.messaging`).
"""

from dtpyfw.kafka._admin import TopicReport, create_topics, ensure_topics
from dtpyfw.kafka._consumer import AsyncConsumer, Consumer, TopicPartition
from dtpyfw.kafka._container import KafkaContainer
from dtpyfw.kafka._producer import (
    AsyncProducer,
    Producer,
    PublishFailed,
    PublishFuture,
    RecordMetadata,
)
from dtpyfw.kafka._settings import KafkaConsumerSettings, KafkaProducerSettings, KafkaSettings

__all__ = [
    "AsyncConsumer",
    "AsyncProducer",
    "Consumer",
    "KafkaConsumerSettings",
    "KafkaContainer",
    "KafkaProducerSettings",
    "KafkaSettings",
    "Producer",
    "PublishFailed",
    "PublishFuture",
    "RecordMetadata",
    "TopicPartition",
    "TopicReport",
    "create_topics",
    "ensure_topics",
]
