"""Kafka under crashes: a group member killed (mock cluster), the 0.9 broker restarted."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from messaging_reliability_helpers import ConsumerProcess, wait_until

from dtpyfw.core.errors import MessagingError
from dtpyfw.kafka import KafkaSettings, Producer
from dtpyfw.messaging import JsonSerializer, Message, MessagingContainer, MessagingSettings
from dtpyfw.testing import Kafka09Broker, ServiceHandle, create_topic

MESSAGES = 10_000
MAX_IN_FLIGHT = 200


@pytest.fixture
def client(private_redis_url: str) -> Iterator[redis.Redis]:
    """Where consumer processes record what they handled."""
    with redis.Redis.from_url(private_redis_url) as client:
        yield client


def consumer_config(prefix: str, redis_url: str, kafka: dict[str, Any]) -> dict[str, Any]:
    """A consumer process reading job.run in group workers."""
    return {
        "record_url": redis_url,
        "key": "handled",
        "type": "job.run",
        "group": "workers",
        "messaging": {
            "transport": "kafka",
            "channel_prefix": prefix,
            "group_prefix": prefix,
            "max_in_flight": MAX_IN_FLIGHT,
            "batch_size": 100,
            "poll_timeout": 0.2,
        },
        "kafka": kafka,
    }


def test_killed_member_partitions_move_to_the_other(
    kafka_service: ServiceHandle,
    kafka_test_settings: dict[str, Any],
    private_redis_url: str,
    client: redis.Redis,
    consumers: Callable[[dict[str, Any]], ConsumerProcess],
) -> None:
    """10,000 messages on 3 partitions, 2 members; one is SIGKILLed; the other handles the rest."""
    prefix = f"rel{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}job.run"
    create_topic(kafka_service, topic, 3)
    # A 2 s session: the killed member is noticed, and the group rebalanced, sooner.
    kafka = {
        **kafka_test_settings,
        "consumer": {
            **kafka_test_settings["consumer"],
            "session_timeout": 2.0,
            "heartbeat_interval": 0.25,
        },
    }
    config = consumer_config(prefix, private_redis_url, kafka)
    doomed, survivor = consumers(config), consumers(config)
    doomed.wait_ready()
    survivor.wait_ready()
    # Publish once the group is stable: each member owns some partitions, together all.
    wait_until(
        lambda: (
            bool(doomed.assignment(topic))
            and bool(survivor.assignment(topic))
            and doomed.assignment(topic) | survivor.assignment(topic) == {0, 1, 2}
            and not doomed.assignment(topic) & survivor.assignment(topic)
        )
    )
    serializer = JsonSerializer()
    with Producer(KafkaSettings.model_validate(kafka_test_settings)) as producer:
        for n in range(MESSAGES):
            message = Message.new("job.run", {"n": n, "p": n % 3}, source="/test")
            producer.publish_nowait(topic, serializer.dumps(message), partition=n % 3)
        producer.flush(60)

    def handled_by(consumer: ConsumerProcess) -> int:
        return int(client.hget("handled:by", str(consumer.pid)) or 0)

    wait_until(
        lambda: (
            handled_by(doomed) >= 100
            and handled_by(survivor) >= 100
            and client.hlen("handled") >= MESSAGES // 3
        )
    )
    doomed.kill()
    assert client.hlen("handled") < MESSAGES, "everything was handled before the kill"
    wait_until(lambda: client.hlen("handled") == MESSAGES, timeout=90)
    assert survivor.stop() == 0, survivor.output()
    counts = {int(n): int(c) for n, c in client.hgetall("handled").items()}
    assert sorted(counts) == list(range(MESSAGES))
    # At most what the killed member had fetched and not committed.
    assert sum(counts.values()) - MESSAGES <= MAX_IN_FLIGHT
    survivor_partitions = {int(p) for p in client.smembers(f"handled:partitions:{survivor.pid}")}
    doomed_partitions = {int(p) for p in client.smembers(f"handled:partitions:{doomed.pid}")}
    assert doomed_partitions, "the killed member never had a partition"
    assert doomed_partitions <= survivor_partitions, "its partitions did not move"


def test_kafka09_restart_mid_stream_loses_nothing_acknowledged(
    kafka09_broker: Kafka09Broker,
    private_redis_url: str,
    client: redis.Redis,
    consumers: Callable[[dict[str, Any]], ConsumerProcess],
) -> None:
    """Kafka 0.9 is killed and restarted while publishing and consuming; nothing acked is lost."""
    prefix = f"rel{uuid.uuid4().hex[:8]}."
    kafka = kafka09_broker.kafka_settings(
        producer={"linger_ms": 0, "confirm_timeout": 20},
        consumer={"session_timeout": 3, "heartbeat_interval": 0.3, "commit_interval": 0.1},
    )
    consumer = consumers(consumer_config(prefix, private_redis_url, kafka))
    consumer.wait_ready()
    container = MessagingContainer(
        settings=MessagingSettings.model_validate(
            {
                "transport": "kafka",
                "channel_prefix": prefix,
                "publish_retry": {"attempts": 60, "initial_delay": 0.1, "max_delay": 0.5},
            }
        ),
        kafka_settings=KafkaSettings.model_validate(kafka),
    )
    bus = container.bus()
    bus.subscribe("job.run", lambda m: None, group="workers")  # the consumer process handles
    assert container.transport().headers_supported() is False  # 0.9 has no record headers
    acknowledged: list[int] = []
    failed: list[str] = []
    stop = threading.Event()

    def publish() -> None:
        n = 0
        while not stop.is_set():
            try:
                bus.publish("job.run", {"n": n})
            except MessagingError as exc:
                failed.append(str(exc))
            else:
                acknowledged.append(n)
            n += 1

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        wait_until(lambda: len(acknowledged) >= 200)
        kafka09_broker.restart()
        restarted_at = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= restarted_at + 200, timeout=90)
    finally:
        stop.set()
        publisher.join(60)
        container.shutdown_resources()
    assert failed == []
    wait_until(lambda: client.hlen("handled") >= len(acknowledged), timeout=90)
    assert consumer.stop() == 0, consumer.output()
    handled = {int(n) for n in client.hkeys("handled")}
    assert set(acknowledged) <= handled
