"""What only the kafka strategy does: band topics, the outbox, skipped records, the band check.

The behaviour it shares with the redis strategy (priorities under load,
retries, dead letters, leases, limits, schedules) is in
``test_worker_distributed.py``, which runs on both.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from dtpyfw.kafka import Consumer, KafkaSettings, Producer, TopicPartition
from dtpyfw.redis import RedisSettings
from dtpyfw.testing import wait_until
from dtpyfw.worker import (
    KafkaBroker,
    TaskQueue,
    TaskRegistry,
    TaskState,
    Worker,
    WorkerSettings,
    task,
)
from dtpyfw.worker._kafka import _Record, topic_for

REGISTRY = TaskRegistry()
RUNS: dict[int, int] = {}


@task(name="k.record", registry=REGISTRY)
def record(number: int) -> int:
    RUNS[number] = RUNS.get(number, 0) + 1
    return number


@pytest.fixture(scope="session")
def redis_test_db() -> int:
    return 12


@pytest.fixture
def kafka(kafka_test_settings: dict[str, Any]) -> KafkaSettings:
    return KafkaSettings.model_validate(kafka_test_settings)


@pytest.fixture
def make_queue(redis_url: str, kafka: KafkaSettings) -> Iterator[Callable[..., TaskQueue]]:
    RUNS.clear()
    made: list[TaskQueue] = []
    namespace = f"k{uuid.uuid4().hex[:10]}"

    def make(**options: Any) -> TaskQueue:
        settings = WorkerSettings.model_validate(
            {"strategy": "kafka", "namespace": namespace, "poll_interval": 0.05, **options}
        )
        broker = KafkaBroker(settings, RedisSettings.model_validate({"url": redis_url}), kafka)
        queue = TaskQueue(broker, settings, REGISTRY)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.close()


def read_topic(kafka: KafkaSettings, topic: str, expected: int) -> list[dict[str, Any]]:
    """Every record of ``topic`` (all partitions, from the start), as parsed JSON."""
    found: list[dict[str, Any]] = []
    with Consumer(kafka, None) as consumer:
        producer = Producer(kafka)
        partitions = producer.partitions_for(topic)
        producer.close()
        consumer.assign([(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 10
        while len(found) < expected and time.monotonic() < deadline:
            found += [json.loads(r.value) for r in consumer.poll(0.2)]
    return found


def test_tasks_travel_on_one_topic_per_queue_and_band(
    make_queue: Callable[..., TaskQueue], kafka: KafkaSettings
) -> None:
    """Priority 9 goes to .high, 5 to .normal, 0 to .low; a record only points at the task."""
    queue = make_queue()
    namespace = queue.settings.namespace
    before = time.time_ns() // 1_000_000
    sent = {p: queue.enqueue(record, (p,), queue="mail", priority=p) for p in (9, 5, 0)}
    queue.broker.close()  # flushes the producer
    after = time.time_ns() // 1_000_000
    for priority, band in ((9, "high"), (5, "normal"), (0, "low")):
        topic = topic_for(namespace, "mail", priority)
        assert topic == f"{namespace}.tasks.mail.{band}"
        (pointer,) = read_topic(kafka, topic, 1)
        assert before <= pointer.pop("at") <= after  # when it became ready
        assert pointer == {"id": sent[priority].id, "priority": priority}


def test_a_record_lost_before_kafka_acknowledged_it_is_sent_again(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker], redis_url: str
) -> None:
    """An enqueuer that dies after the Redis step: a worker sends its record from the outbox."""
    producer_side = make_queue(visibility_timeout=0.5)
    producer_side.broker._send = lambda entries: None  # type: ignore[method-assign]  # dies here
    handle = producer_side.enqueue(record, (1,))
    outbox = f"{{{producer_side.settings.namespace}}}:outbox"
    with redis.Redis.from_url(redis_url) as client:
        assert client.zcard(outbox) == 1
        start(make_queue(visibility_timeout=0.5), concurrency=1)
        assert handle.result(timeout=10) == 1
        wait_until(lambda: client.zcard(outbox) == 0)  # removed once Kafka acknowledged
    assert RUNS == {1: 1}


def test_records_for_finished_tasks_and_foreign_records_are_skipped(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker], kafka: KafkaSettings
) -> None:
    """A duplicate pointer runs nothing twice; a record that is no pointer is skipped."""
    queue = make_queue()
    start(queue, concurrency=2)
    first = queue.enqueue(record, (1,))
    assert first.result(timeout=10) == 1
    topic = topic_for(queue.settings.namespace, "default", 5)
    producer = Producer(kafka)
    for value in (
        json.dumps({"id": first.id, "priority": 5}).encode(),
        b"not a task pointer",
        json.dumps({"id": "no-such-task", "priority": 5}).encode(),
    ):
        last = producer.publish(topic, value, partition=0)
    producer.close()
    broker = queue.broker
    assert isinstance(broker, KafkaBroker)
    with Consumer(kafka, broker.group) as probe:  # not subscribed: it never joins the group
        # Committed past all three: read, skipped, and the worker went on.
        wait_until(lambda: probe.committed(TopicPartition(topic, 0)) == last.offset + 1)
    after = queue.enqueue(record, (2,))
    assert after.result(timeout=10) == 2
    assert RUNS == {1: 1, 2: 1}
    assert first.status() is TaskState.SUCCEEDED


@pytest.mark.parametrize(("limit", "taken_on_try"), [(2, 3), (0, None)])
def test_a_lower_band_waits_for_higher_tasks_elsewhere_then_the_starvation_rule(
    make_queue: Callable[..., TaskQueue], limit: int, taken_on_try: int | None
) -> None:
    """The take step refuses a low task while a high one waits; `limit` refusals force it.

    The record is put in the worker's buffer by hand, as if this worker held
    only the low band's partition and another held the high one.
    """
    queue = make_queue(starvation_limit=limit)
    broker = queue.broker
    assert isinstance(broker, KafkaBroker)
    low = queue.enqueue(record, (0,), priority="low")
    high = queue.enqueue(record, (9,), priority="high")
    tp = TopicPartition(topic_for(queue.settings.namespace, "default", 0), 0)
    broker._hold(tp, _Record(low.id, 0, 0, 0))
    outcomes = [broker._take(1, "w") for _ in range(4)]
    tries = [i + 1 for i, taken in enumerate(outcomes) if taken]
    assert tries == ([] if taken_on_try is None else [taken_on_try])
    assert high.status() is TaskState.QUEUED
    if taken_on_try is not None:
        assert outcomes[taken_on_try - 1][0].id == low.id
        assert low.status() is TaskState.RUNNING
