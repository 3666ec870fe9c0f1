"""Kafka 4 under crashes: a group member killed, the broker restarted mid-stream."""

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
from dtpyfw.testing import KafkaBroker, ServiceHandle, create_topic

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
    # 1 ms of work per message: a real broker delivers 10,000 so fast that both
    # members would be done before the kill otherwise.
    config = {**consumer_config(prefix, private_redis_url, kafka), "work_seconds": 0.001}
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

    # Kill as soon as the doomed member works, while its partitions still hold
    # thousands of messages (waiting for the survivor too let the doomed one
    # finish a partition first): the survivor must then handle those partitions.
    wait_until(lambda: handled_by(doomed) >= 100)
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


def test_broker_restart_mid_stream_loses_nothing_acknowledged(
    kafka_broker: KafkaBroker,
    private_redis_url: str,
    client: redis.Redis,
    consumers: Callable[[dict[str, Any]], ConsumerProcess],
) -> None:
    """The broker is killed and restarted while publishing and consuming; nothing acked is lost."""
    prefix = f"rel{uuid.uuid4().hex[:8]}."
    kafka = kafka_broker.kafka_settings(
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
    assert container.transport().headers_supported() is True  # CloudEvents binary mode
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
        kafka_broker.restart()
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


def test_idempotent_producer_across_a_broker_restart_neither_loses_nor_duplicates(
    kafka_broker: KafkaBroker,
) -> None:
    """enable_idempotence: a SIGKILLed broker mid-publish; the log holds each acked record once.

    Without idempotence, a batch the broker wrote but never acknowledged is
    written again by the producer's retry; with it, the broker drops the
    resend by its producer id and sequence number.
    """
    topic = f"idem{uuid.uuid4().hex[:8]}"
    create_topic(_handle(kafka_broker), topic, 1)
    settings = KafkaSettings.model_validate(
        kafka_broker.kafka_settings(
            producer={
                "enable_idempotence": True,
                "acks": "all",
                "linger_ms": 1,
                "retries": 10_000,  # bounded by delivery_timeout, not by a count
                "delivery_timeout": 90,
                "confirm_timeout": 95,
            }
        )
    )
    acknowledged: list[int] = []
    failed: list[str] = []
    stop = threading.Event()

    def publish(producer: Producer) -> None:
        n = 0
        try:
            while not stop.is_set():
                # Several records in flight, so the kill catches some unacknowledged.
                futures = [
                    (n + i, producer.publish_nowait(topic, str(n + i).encode())) for i in range(20)
                ]
                for number, future in futures:
                    try:
                        future.result(95)
                    except MessagingError as exc:
                        failed.append(f"{number}: {exc}")
                    else:
                        acknowledged.append(number)
                n += 20
        except Exception as exc:  # reported by the assertions below, not lost in the thread
            failed.append(f"publisher stopped: {exc!r}")

    with Producer(settings) as producer:
        publisher = threading.Thread(target=publish, args=(producer,))
        publisher.start()
        try:
            wait_until(lambda: len(acknowledged) >= 2_000 or bool(failed), timeout=60)
            kafka_broker.kill()
            killed_at = len(acknowledged)
            kafka_broker.start()
            wait_until(lambda: len(acknowledged) >= killed_at + 2_000 or bool(failed), timeout=90)
        finally:
            stop.set()
            publisher.join(120)
    assert failed == []
    logged = _read_all(kafka_broker.bootstrap, topic)
    assert len(logged) == len(set(logged)), "a record was written twice"
    assert set(acknowledged) <= set(logged)
    assert sorted(logged) == list(range(len(logged))), "the log is not the published sequence"


def _handle(broker: KafkaBroker) -> ServiceHandle:
    return ServiceHandle("Kafka", broker.url, "env")


def _read_all(bootstrap: str, topic: str) -> list[int]:
    """Every record of ``topic`` partition 0, from the first offset to the last."""
    import kafka

    consumer = kafka.KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False)
    try:
        partition = kafka.TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        values: list[int] = []
        while consumer.position(partition) < end:
            for records in consumer.poll(timeout_ms=1000).values():
                values.extend(int(record.value) for record in records)
        return values
    finally:
        consumer.close()
