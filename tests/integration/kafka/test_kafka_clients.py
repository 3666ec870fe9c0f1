"""Producer, Consumer, their async facades, topics and health, on Apache Kafka 4."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from dtpyfw.core.errors import MessagingError
from dtpyfw.kafka import (
    AsyncConsumer,
    AsyncProducer,
    Consumer,
    KafkaContainer,
    KafkaSettings,
    Producer,
    TopicPartition,
    create_topics,
    ensure_topics,
)
from dtpyfw.testing import ServiceHandle, create_topic, start_kafka_mock


@pytest.fixture
def settings(kafka_test_settings: dict[str, Any]) -> KafkaSettings:
    """Settings for the session's broker."""
    return KafkaSettings.model_validate(kafka_test_settings)


@pytest.fixture
def topic(kafka_service: ServiceHandle) -> str:
    """A fresh topic with 3 partitions."""
    name = f"clients-{uuid.uuid4().hex[:10]}"
    create_topic(kafka_service, name, 3)
    return name


@pytest.fixture
def producer(settings: KafkaSettings) -> Iterator[Producer]:
    """A producer closed after the test."""
    with Producer(settings) as producer:
        yield producer


def poll_until(consumer: Consumer, count: int, timeout: float = 15.0) -> list[Any]:
    """Poll until ``count`` records arrived; fail after ``timeout`` seconds."""
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        assert time.monotonic() < deadline, f"only {len(found)} of {count} records arrived"
        found.extend(consumer.poll(0.1))
    return found


def test_publish_confirms_and_keys_pick_partitions(producer: Producer, topic: str) -> None:
    """publish returns the stored position; one key always lands on one partition."""
    first = producer.publish(topic, b"a", key=b"order-1")
    second = producer.publish(topic, b"b", key=b"order-1")
    assert (first.topic, second.partition) == (topic, first.partition)
    assert second.offset == first.offset + 1
    futures = [producer.publish_nowait(topic, b"x", partition=2) for _ in range(10)]
    producer.flush(10)
    assert all(future.done() for future in futures)
    offsets = [future.result().offset for future in futures]
    assert offsets == sorted(offsets)
    assert producer.partitions_for(topic) == {0, 1, 2}
    assert producer.supports_headers


def test_gzip_batches_and_headers_round_trip(settings: KafkaSettings, topic: str) -> None:
    """A gzip producer's records come back intact with their headers."""
    producer_settings = settings.producer.model_copy(update={"compression": "gzip"})
    gzip = settings.model_copy(update={"producer": producer_settings})
    with Producer(gzip) as producer:
        producer.publish(topic, b"z" * 1000, headers=[("ce_type", b"t")], partition=0)
    with Consumer(settings, None) as consumer:
        consumer.assign([(topic, 0)])
        consumer.seek_to_beginning([(topic, 0)])
        (record,) = poll_until(consumer, 1)
    assert record.value == b"z" * 1000
    assert record.headers == [("ce_type", b"t")]


def test_group_commits_rebalance_callbacks_pause_and_seek(
    settings: KafkaSettings, producer: Producer, topic: str
) -> None:
    """A member is assigned partitions, commits, pauses, resumes and seeks."""
    for n in range(6):
        producer.publish(topic, str(n).encode(), partition=n % 3)
    assigned: list[set[Any]] = []
    group = f"g-{uuid.uuid4().hex[:8]}"
    with Consumer(settings, group) as consumer:
        consumer.subscribe([topic], on_assign=assigned.append)
        records = poll_until(consumer, 6)
        assert sorted(r.value for r in records) == [b"0", b"1", b"2", b"3", b"4", b"5"]
        assert {(tp.topic, tp.partition) for tp in assigned[-1]} == {(topic, p) for p in range(3)}
        consumer.commit({(topic, 0): 2})
        assert consumer.committed((topic, 0)) == 2
        consumer.pause()
        producer.publish(topic, b"later", partition=0)
        assert consumer.poll(0.5) == []
        consumer.resume()
        assert [r.value for r in poll_until(consumer, 1)] == [b"later"]
        consumer.pause([TopicPartition(topic, 1)])  # one partition, named our way
        producer.publish(topic, b"held", partition=1)
        producer.publish(topic, b"flows", partition=2)
        assert [r.value for r in poll_until(consumer, 1)] == [b"flows"]
        consumer.resume([(topic, 1)])
        assert [r.value for r in poll_until(consumer, 1)] == [b"held"]
        consumer.seek_to_beginning()
        assert len(poll_until(consumer, 9)) == 9
        consumer.seek_to_end()
        assert consumer.poll(0.3) == []


def test_seek_to_timestamp(settings: KafkaSettings, producer: Producer, topic: str) -> None:
    """Seeking to a time reads from the first record at or after it (brokers 0.10.1+)."""
    # Kafka 4 refuses timestamps over an hour ahead of its clock
    # (log.message.timestamp.after.max.ms), so both lie in the past.
    now_ms = int(time.time() * 1000)
    day_ms = 86_400_000
    older = producer.publish(topic, b"old", partition=1, timestamp_ms=now_ms - 2 * day_ms)
    newer = producer.publish(topic, b"new", partition=1, timestamp_ms=now_ms - 60_000)
    assert (older.timestamp, newer.timestamp) == (now_ms - 2 * day_ms, now_ms - 60_000)
    with Consumer(settings, None) as consumer:
        consumer.assign([(topic, 1)])
        consumer.seek_to_timestamp(now_ms - day_ms, [(topic, 1)])
        assert [r.value for r in poll_until(consumer, 1)] == [b"new"]


async def test_async_facades_do_not_block_the_loop(settings: KafkaSettings, topic: str) -> None:
    """AsyncProducer awaits acknowledgements; AsyncConsumer polls from its own thread."""
    async with AsyncProducer.from_settings(settings) as producer:
        meta = await producer.publish(topic, b"async", partition=2)
        pending = await producer.publish_nowait(topic, b"async-2", partition=2)
        assert (await pending).offset == meta.offset + 1
    async with await AsyncConsumer.create(settings, None) as consumer:
        await consumer.assign([(topic, 2)])
        await consumer.seek_to_beginning([(topic, 2)])
        values: list[bytes] = []
        deadline = time.monotonic() + 15
        while len(values) < 2:
            assert time.monotonic() < deadline
            values += [r.value for r in await consumer.poll(0.1)]
    assert values == [b"async", b"async-2"]


def test_topics_are_created_through_the_admin_api(settings: KafkaSettings) -> None:
    """Kafka 4 has CreateTopics: ensure_topics creates a missing topic, then finds it."""
    name = f"admin-{uuid.uuid4().hex[:10]}"
    (report,) = ensure_topics(settings, [name])
    assert (report.topic, report.outcome) == (name, "created")
    (again,) = ensure_topics(settings, [name])
    assert (again.outcome, again.partitions) == ("exists", report.partitions)


def test_topics_without_an_admin_api_auto_create() -> None:
    """librdkafka's mock cluster has no CreateTopics: topics are reported auto-created."""
    with start_kafka_mock() as mock:
        settings = KafkaSettings(bootstrap_servers=mock.url.removeprefix("kafka://").split(","))
        name = f"auto-{uuid.uuid4().hex[:10]}"
        assert create_topics(settings, [name]) is None
        (report,) = ensure_topics(settings, [name])
    assert (report.topic, report.outcome) == (name, "auto-created")
    assert report.partitions > 0


def test_container_health(settings: KafkaSettings) -> None:
    """health_check passes against the cluster and fails fast against a closed port."""
    container = KafkaContainer(settings=settings)
    try:
        container.health_check()
    finally:
        container.shutdown_resources()
    dead = KafkaContainer(
        settings=KafkaSettings(bootstrap_servers=["127.0.0.1:1"], health_timeout=1)
    )
    started = time.monotonic()
    try:
        with pytest.raises(MessagingError):
            dead.health_check()
    finally:
        dead.shutdown_resources()
    assert time.monotonic() - started < 15


def test_messages_carry_cloudevents_headers(
    settings: KafkaSettings, kafka_service: ServiceHandle
) -> None:
    """On brokers with headers, the bus adds ce_ headers next to the structured value."""
    from dtpyfw.messaging import MessageBus, MessagingSettings, decode_message
    from dtpyfw.messaging._kafka import KafkaTransport

    prefix = f"h{uuid.uuid4().hex[:8]}."
    create_topic(kafka_service, f"{prefix}order.paid", 1)
    transport = KafkaTransport.from_settings(
        MessagingSettings(transport="kafka", channel_prefix=prefix), settings
    )
    try:
        sent = MessageBus(transport).publish("order.paid", {"n": 1}, subject="order/1")
    finally:
        transport.close()
    with Consumer(settings, None) as consumer:
        consumer.assign([(f"{prefix}order.paid", 0)])
        consumer.seek_to_beginning()
        (record,) = poll_until(consumer, 1)
    headers = dict(record.headers)
    assert headers["ce_id"] == sent.id.encode()
    assert headers["ce_type"] == b"order.paid"
    assert headers["ce_subject"] == b"order/1"
    assert headers["content-type"] == b"application/cloudevents+json"
    assert record.key == b"order/1"
    assert decode_message(record.value) == sent
