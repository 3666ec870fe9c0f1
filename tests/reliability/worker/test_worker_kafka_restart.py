"""The kafka worker strategy on a real Kafka 4 broker that is killed and restarted mid-run."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from dtpyfw.kafka import KafkaSettings
from dtpyfw.redis import RedisSettings
from dtpyfw.testing import KafkaBroker as KafkaNode
from dtpyfw.testing import wait_until
from dtpyfw.worker import KafkaBroker, TaskQueue, TaskRegistry, Worker, WorkerSettings, task

REGISTRY = TaskRegistry()
RUNS: dict[int, int] = {}
_LOCK = threading.Lock()


@task(name="restart.count", registry=REGISTRY)
def count(number: int) -> None:
    with _LOCK:
        RUNS[number] = RUNS.get(number, 0) + 1


@pytest.fixture
def queue(kafka_broker: KafkaNode, redis_url: str) -> Iterator[TaskQueue]:
    RUNS.clear()
    timings: dict[str, Any] = {
        "producer": {"linger_ms": 0},
        "consumer": {"session_timeout": 6.0, "heartbeat_interval": 1.0, "commit_interval": 0.1},
    }
    kafka = KafkaSettings.model_validate(kafka_broker.kafka_settings(**timings))
    settings = WorkerSettings(
        strategy="kafka",
        namespace=f"r{uuid.uuid4().hex[:8]}",
        poll_interval=0.1,
        visibility_timeout=3.0,
    )
    made = TaskQueue(
        KafkaBroker(settings, RedisSettings.model_validate({"url": redis_url}), kafka),
        settings,
        REGISTRY,
    )
    yield made
    made.close()


def test_tasks_survive_a_broker_restart_and_run_once(
    queue: TaskQueue, kafka_broker: KafkaNode
) -> None:
    """300 tasks before, 100 while the broker is down: all 400 run, each exactly once."""
    worker = Worker(queue, concurrency=4)
    worker.start()
    try:
        queue.enqueue_many(count, [(n,) for n in range(300)])
        wait_until(lambda: len(RUNS) >= 50, timeout=60, what="the first runs")
        kafka_broker.kill()
        # The Redis step succeeds; the records wait in the producer, or in the outbox
        # if the producer gives up, until the broker is back.
        for number in range(300, 400):
            queue.enqueue(count, (number,))
        kafka_broker.restart()
        wait_until(lambda: len(RUNS) == 400, timeout=120, interval=0.1, what="all 400 runs")
    finally:
        worker.stop(timeout=5)
    runs = dict(RUNS)
    assert runs == dict.fromkeys(range(400), 1)
    (row,) = queue.stats()
    assert (row.succeeded, row.queued, row.running, row.dead) == (400, 0, 0, 0)
