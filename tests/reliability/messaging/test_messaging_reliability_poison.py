"""Bad input: invalid data and poison messages are dead-lettered without blocking their channel."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from messaging_reliability_helpers import ConsumerProcess, wait_until
from pydantic import BaseModel

from dtpyfw.messaging import Message, MessagingContainer, MessagingSettings
from dtpyfw.testing import ServiceHandle, create_topic

GOOD = 50


class Job(BaseModel):
    """The data of a job message."""

    n: int


@pytest.fixture(params=["redis", "kafka"])
def transport(request: pytest.FixtureRequest) -> str:
    """The broker transport under test."""
    return str(request.param)


def test_poison_and_invalid_messages_never_block_the_channel(
    transport: str, request: pytest.FixtureRequest
) -> None:
    """In strict order, a failing and an invalid message are dead-lettered; the rest flows on."""
    prefix = f"bad{uuid.uuid4().hex[:8]}."
    values: dict[str, Any] = {
        "transport": transport,
        "channel_prefix": prefix,
        "group_prefix": prefix,
        "concurrency": 1,
        "poll_timeout": 0.2,
        "retry": {"attempts": 3, "initial_delay": 0, "max_delay": 0, "jitter": 0},
    }
    options: dict[str, Any] = {}
    if transport == "redis":
        from dtpyfw.redis import RedisSettings

        url = request.getfixturevalue("private_redis_url")
        options["redis_settings"] = RedisSettings.model_validate({"url": url})
    else:
        from dtpyfw.kafka import KafkaSettings

        service: ServiceHandle = request.getfixturevalue("kafka_service")
        create_topic(service, f"{prefix}job", 1)
        options["kafka_settings"] = KafkaSettings.model_validate(
            request.getfixturevalue("kafka_test_settings")
        )
    container = MessagingContainer(settings=MessagingSettings.model_validate(values), **options)
    container.registry().register("job", Job)
    bus = container.bus()
    handled: list[int] = []
    lock = threading.Lock()

    @bus.handler("job", group="workers")
    def work(message: Message) -> None:
        if message.data.n == 0:
            raise RuntimeError("poison")
        with lock:
            handled.append(message.data.n)

    try:
        bus.publish("job", {"n": 0}, subject="one-partition")
        bus.publish("job", {"n": "not a number"}, subject="one-partition")
        for n in range(1, GOOD + 1):
            bus.publish("job", Job(n=n), subject="one-partition")
        with container.runner():
            wait_until(lambda: len(handled) == GOOD, timeout=60)
            wait_until(lambda: len(container.transport().read_dead_letters("job")) == 2)
        assert handled == list(range(1, GOOD + 1))
        dead = {d.attempts: d for d in container.transport().read_dead_letters("job")}
        assert dead[3].error == "RuntimeError: poison"
        assert dead[1].error.startswith("InvalidMessage:")
        assert "n" in dead[1].error
        assert {d.group for d in dead.values()} == {"workers"}
        _assert_all_acknowledged(container, transport, prefix, options)
    finally:
        container.shutdown_resources()


def _assert_all_acknowledged(
    container: MessagingContainer, transport: str, prefix: str, options: dict[str, Any]
) -> None:
    """Nothing is left pending (Redis) / the committed offset is the end (Kafka)."""
    if transport == "redis":
        url = options["redis_settings"].connection_url()
        with redis.Redis.from_url(url) as client:
            assert client.xpending(f"{prefix}job", f"{prefix}workers")["pending"] == 0
        return
    from dtpyfw.kafka import Consumer

    with Consumer(options["kafka_settings"], f"{prefix}workers") as consumer:
        assert consumer.committed((f"{prefix}job", 0)) == GOOD + 2


def test_a_message_whose_handler_kills_its_process_ends_in_the_dead_letters(
    private_redis_url: str, consumers: Callable[[dict[str, Any]], ConsumerProcess]
) -> None:
    """Redis streams: each delivery SIGKILLs its consumer; after max_deliveries it is a DLQ entry.

    Without the delivery count it would be reclaimed by one consumer after
    another for ever; the good messages behind it still all get handled.
    """
    from dtpyfw.redis import RedisSettings

    prefix = f"kill{uuid.uuid4().hex[:8]}."
    max_deliveries = 3
    messaging = {
        "transport": "redis",
        "channel_prefix": prefix,
        "group_prefix": prefix,
        "concurrency": 1,
        "batch_size": 1,
        "poll_timeout": 0.1,
        "redis": {"claim_idle": 0.3, "claim_interval": 0.1, "max_deliveries": max_deliveries},
    }
    config = {
        "record_url": private_redis_url,
        "key": "handled",
        "type": "job.run",
        "group": "workers",
        "messaging": messaging,
        "redis": {"url": private_redis_url},
    }
    container = MessagingContainer(
        settings=MessagingSettings.model_validate(messaging),
        redis_settings=RedisSettings.model_validate({"url": private_redis_url}),
    )
    bus = container.bus()
    bus.subscribe("job.run", lambda m: None, group="workers")  # the processes handle
    poison = bus.publish("job.run", {"die": True, "n": -1})
    for n in range(GOOD):
        bus.publish("job.run", {"n": n})
    record = redis.Redis.from_url(private_redis_url)
    started: list[ConsumerProcess] = []

    def dead_letters() -> list[Any]:
        found: list[Any] = container.transport().read_dead_letters("job.run")
        return found

    try:
        # A consumer that dies is replaced, as an orchestrator would, until the
        # message is dead-lettered; the bound catches a message that cycles for ever.
        while not dead_letters():
            assert len(started) <= max_deliveries + 2, "the poison message never ended"
            consumer = consumers(config)
            started.append(consumer)
            wait_until(lambda c=consumer: c.process.poll() is not None or bool(dead_letters()))
        survivor = started[-1]
        wait_until(lambda: record.hlen("handled") == GOOD)
        assert survivor.process.poll() is None, survivor.output()
        assert survivor.stop() == 0, survivor.output()
    finally:
        container.shutdown_resources()
    (dead,) = dead_letters()
    assert dead.message is not None
    assert dead.message.id == poison.id
    assert dead.attempts == max_deliveries + 1
    assert f"delivered {max_deliveries + 1} times" in dead.error
    assert int(record.get("handled:deaths") or 0) == max_deliveries  # each delivery ran once
    assert sorted(int(n) for n in record.hkeys("handled")) == list(range(GOOD))
    with redis.Redis.from_url(private_redis_url) as client:
        assert client.xpending(f"{prefix}job.run", f"{prefix}workers")["pending"] == 0
