"""Messaging, Kafka and cache wrappers against the raw clients, in one run.

Run: ``.venv/bin/python benchmarks/bench_messaging.py`` (``make bench`` runs every
benchmark). Brokers come from :mod:`dtpyfw.testing`: the Redis on 127.0.0.1:6379
(else a private redis-server) and ``DTPYFW_TEST_KAFKA_URL`` (else a broker on
127.0.0.1:9092, else an Apache Kafka 4 broker the harness starts).

Cases (``ratio`` = ours / raw; above 1 means ours is faster):

* kafka Producer/Consumer -- 50,000 small records: ``dtpyfw.kafka.Producer``
  ``publish_nowait`` then ``flush``, then a group ``Consumer`` polling until it has
  them all and committing after each poll; raw: ``kafka.KafkaProducer.send`` and
  ``kafka.KafkaConsumer.poll``/``commit`` with the very same configuration
  (both built by ``dtpyfw.kafka``'s settings mapping).
* kafka messaging consume -- the same 50,000 CloudEvents already in a topic,
  delivered to a handler by the messaging ``Runner`` (decode, dispatch, commit);
  raw: a ``KafkaConsumer`` loop that ``json.loads`` each value, calls the handler
  and commits after each poll. Both run one handler at a time, in order (the
  runner with ``concurrency=1``).
* kafka confirmed publish -- 500 messages, each waiting for the broker's
  acknowledgement: ``bus.publish`` (envelope, ce_ headers, key) vs raw
  ``send(...).get()`` of the same bytes.
* redis streams publish+consume -- 50,000 messages: ``bus.publish`` (one ``XADD``
  each) then the ``Runner`` (``XREADGROUP`` 100 at a time, acks pipelined with the
  next read, ``concurrency=1``); raw: ``XADD`` of the same JSON bytes, then an
  ``XREADGROUP`` COUNT 100 loop that ``json.loads`` each entry, calls the handler
  and ``XACK``s the batch.
* cache hit / miss -- ``@cache.cached`` function (key from the arguments, typed
  JSON value, stampede lock on a miss) vs raw ``GET`` (hit) and ``GET`` + ``SET``
  (miss) of the same key and value bytes.

Each case runs ``REPEATS`` times (the cache cases, shorter, ``CACHE_REPEATS``
times), ours and raw alternating, and the best rate of each is reported. The
clock stops when the last message is handled: stopping a
runner (up to its ``poll_timeout``) and closing consumers happen after. Handlers
do nothing but count, so the figures are the framework's cost, not the
application's.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import kafka
import redis
from _report import Result, report

from dtpyfw.kafka import Consumer, KafkaSettings, Producer
from dtpyfw.kafka._client import consumer_config, producer_config
from dtpyfw.messaging import (
    JsonSerializer,
    Message,
    MessageBus,
    MessagingSettings,
    RedisStreamsTransport,
    Runner,
)
from dtpyfw.messaging._kafka import KafkaTransport
from dtpyfw.redis import Cache
from dtpyfw.testing import KAFKA_VERSION, bootstrap_of, create_topic, find_kafka, find_redis

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "50000"))
CONFIRMED = int(os.environ.get("BENCH_CONFIRMED", "500"))
CACHE_CALLS = int(os.environ.get("BENCH_CACHE_CALLS", "5000"))
CACHE_REPEATS = int(os.environ.get("BENCH_CACHE_REPEATS", "9"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


class Counter:
    """Counts handled messages; ``done`` is set at ``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.done = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, _message: object = None) -> None:
        with self._lock:
            self.count += 1
            if self.count >= self.target:
                self.done.set()


Run = Callable[[], Callable[[], None] | None]


def timed(run: Run) -> float:
    """Seconds ``run`` takes, with the garbage collector paused.

    ``run`` may return a clean-up (stopping a runner waits up to its poll
    timeout; closing a consumer leaves its group): it runs after the clock stops.
    """
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        cleanup = run()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    if cleanup is not None:
        cleanup()
    return elapsed


def best_rates(count: int, ours: Run, raw: Run, repeats: int = REPEATS) -> tuple[float, float]:
    """Best rate of each over ``repeats`` alternating runs."""
    ours_best = raw_best = 0.0
    for _ in range(repeats):
        ours_best = max(ours_best, count / timed(ours))
        raw_best = max(raw_best, count / timed(raw))
    return ours_best, raw_best


def envelope(n: int) -> bytes:
    """A small CloudEvent as bytes, as both sides of a comparison send it."""
    return JsonSerializer().dumps(Message.new("bench.tick", {"n": n}, source="/bench"))


# --- Kafka ---------------------------------------------------------------------------------------


def kafka_cases(settings: KafkaSettings, handle: Any) -> list[Result]:
    payloads = [envelope(n) for n in range(MESSAGES)]
    results = []

    def fresh_topic() -> str:
        topic = f"bench-{uuid.uuid4().hex[:10]}"
        create_topic(handle, topic, 3)
        return topic

    def wrapper_round_trip() -> Callable[[], None]:
        topic = fresh_topic()
        with Producer(settings) as producer:
            for value in payloads:
                producer.publish_nowait(topic, value)
            producer.flush()
        consumer = Consumer(settings, f"g-{uuid.uuid4().hex[:8]}")
        consumer.subscribe([topic])
        received = 0
        while received < MESSAGES:
            received += len(consumer.poll(0.5))
            consumer.commit()
        return consumer.close

    def raw_round_trip() -> Callable[[], None]:
        topic = fresh_topic()
        producer = kafka.KafkaProducer(**producer_config(settings))
        for value in payloads:
            producer.send(topic, value)
        producer.flush()
        producer.close()
        consumer = kafka.KafkaConsumer(**consumer_config(settings, f"g-{uuid.uuid4().hex[:8]}"))
        consumer.subscribe([topic])
        received = 0
        while received < MESSAGES:
            batches = consumer.poll(timeout_ms=500)
            received += sum(len(records) for records in batches.values())
            consumer.commit()
        return lambda: consumer.close(autocommit=False)

    ours, raw = best_rates(MESSAGES, wrapper_round_trip, raw_round_trip)
    results.append(
        Result.rate(
            "kafka publish+consume (Producer/Consumer) vs kafka-python", ours, raw, "msgs/s"
        )
    )

    def filled_topic() -> str:
        topic = f"{uuid.uuid4().hex[:8]}.bench.tick"  # <channel_prefix><type>
        create_topic(handle, topic, 3)
        create_topic(handle, f"{topic}.commands", 1)  # the runner also reads the commands
        producer = kafka.KafkaProducer(**producer_config(settings))
        for value in payloads:
            producer.send(topic, value)
        producer.flush()
        producer.close()
        return topic

    # One handler at a time, in order: what the raw loop does.
    messaging = MessagingSettings(transport="kafka", concurrency=1)

    def runner_consume(topic: str) -> Run:
        # Topic checks happen before the clock starts; group join and all else inside it.
        prefix = topic.removesuffix("bench.tick")
        settings_for_run = messaging.model_copy(
            update={"channel_prefix": prefix, "group_prefix": prefix}
        )
        transport = KafkaTransport.from_settings(settings_for_run, settings)
        transport.ensure_topics([topic, f"{topic}.commands"])
        bus = MessageBus(transport)
        counter = Counter(MESSAGES)
        bus.subscribe("bench.tick", counter, group="bench")

        def run() -> Callable[[], None]:
            runner = Runner.from_settings(bus, settings_for_run)
            runner.start()
            counter.done.wait()

            def stop() -> None:
                runner.stop()
                transport.close()

            return stop

        return run

    def raw_consume(topic: str) -> Run:
        def run() -> Callable[[], None]:
            consumer = kafka.KafkaConsumer(**consumer_config(settings, uuid.uuid4().hex))
            consumer.subscribe([topic])
            counter = Counter(MESSAGES)
            while not counter.done.is_set():
                for records in consumer.poll(timeout_ms=500, max_records=100).values():
                    for record in records:
                        counter(json.loads(record.value))
                consumer.commit()
            return lambda: consumer.close(autocommit=False)

        return run

    ours_best = raw_best = 0.0
    for _ in range(REPEATS):
        ours_best = max(ours_best, MESSAGES / timed(runner_consume(filled_topic())))
        raw_best = max(raw_best, MESSAGES / timed(raw_consume(filled_topic())))
    results.append(
        Result.rate(
            "kafka consume (messaging Runner) vs kafka-python poll loop",
            ours_best,
            raw_best,
            "msgs/s",
        )
    )

    transport = KafkaTransport.from_settings(messaging, settings)
    transport.ensure_topics(["bench.confirmed"])
    bus = MessageBus(transport)
    raw_producer = kafka.KafkaProducer(**producer_config(settings))
    bus.publish("bench.confirmed", {"n": -1})  # connected and warm, like the raw producer
    raw_producer.send("bench.confirmed", envelope(-1)).get(30)

    def bus_confirmed() -> None:
        for n in range(CONFIRMED):
            bus.publish("bench.confirmed", {"n": n})

    def raw_confirmed() -> None:
        for n in range(CONFIRMED):
            raw_producer.send("bench.confirmed", envelope(n)).get(30)

    ours, raw = best_rates(CONFIRMED, bus_confirmed, raw_confirmed)
    transport.close()
    raw_producer.close()
    results.append(
        Result.rate("kafka confirmed publish (bus.publish) vs send().get()", ours, raw, "msgs/s")
    )
    return results


# --- Redis ---------------------------------------------------------------------------------------


def redis_cases(url: str) -> list[Result]:
    client = redis.Redis.from_url(url)
    results = []
    messaging = MessagingSettings(transport="redis", concurrency=1, redis={"max_length": None})

    def ours() -> Callable[[], None]:
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        settings = messaging.model_copy(update={"channel_prefix": prefix})
        transport = RedisStreamsTransport.from_settings(settings, client)
        bus = MessageBus(transport)
        counter = Counter(MESSAGES)
        bus.subscribe("bench.tick", counter, group="bench")
        for n in range(MESSAGES):
            bus.publish("bench.tick", {"n": n})
        runner = Runner.from_settings(bus, settings)
        runner.start()
        counter.done.wait()

        def stop() -> None:
            runner.stop()
            client.delete(f"{prefix}bench.tick", f"{prefix}bench.tick.commands")

        return stop

    def raw() -> Callable[[], None]:
        stream = f"bench-raw-{uuid.uuid4().hex[:8]}"
        for n in range(MESSAGES):
            client.xadd(stream, {b"m": envelope(n)})
        client.xgroup_create(stream, "bench", id="0")
        counter = Counter(MESSAGES)
        while not counter.done.is_set():
            reply = client.xreadgroup("bench", "c1", {stream: ">"}, count=100, block=1000)
            for _name, entries in reply or ():
                for _entry_id, fields in entries:
                    counter(json.loads(fields[b"m"]))
                client.xack(stream, "bench", *[entry_id for entry_id, _ in entries])
        return lambda: client.delete(stream)

    ours_rate, raw_rate = best_rates(MESSAGES, ours, raw)
    results.append(
        Result.rate(
            "redis streams publish+consume vs redis-py XADD/XREADGROUP",
            ours_rate,
            raw_rate,
            "msgs/s",
        )
    )

    # The raw side builds the same envelope per publish as ours does, so publish
    # compares the transport, not the cost of making a message.
    cache = Cache(client, namespace=f"bench-{uuid.uuid4().hex[:6]}")

    @cache.cached(ttl=300)
    def lookup(user_id: int) -> dict[str, Any]:
        return {"user_id": user_id, "name": "ada", "roles": ["admin", "dev"]}

    value = json.dumps(lookup.__wrapped__(1)).encode()
    keys = [f"raw-hit-{uuid.uuid4().hex[:6]}-{n}" for n in range(100)]
    for key in keys:
        client.set(key, value, px=300_000)

    def cached_hits() -> None:
        for i in range(CACHE_CALLS):
            lookup(i % 100)

    def raw_hits() -> None:
        for i in range(CACHE_CALLS):
            json.loads(client.get(keys[i % 100]) or b"null")

    for n in range(100):
        lookup(n)  # warm: every key present
    ours_rate, raw_rate = best_rates(CACHE_CALLS, cached_hits, raw_hits, CACHE_REPEATS)
    results.append(
        Result.rate("cache hit (@cached) vs redis-py GET", ours_rate, raw_rate, "calls/s")
    )

    counter = iter(range(10**9))

    def cached_misses() -> None:
        for _ in range(CACHE_CALLS):
            lookup(1_000_000 + next(counter))

    def raw_misses() -> None:
        for _ in range(CACHE_CALLS):
            key = f"raw-miss-{next(counter)}"
            if client.get(key) is None:
                client.set(key, value, px=300_000)

    ours_rate, raw_rate = best_rates(CACHE_CALLS, cached_misses, raw_misses, CACHE_REPEATS)
    results.append(
        Result.rate(
            "cache miss+store (@cached) vs redis-py GET+SET", ours_rate, raw_rate, "calls/s"
        )
    )
    client.close()
    return results


def main() -> None:
    with find_redis() as redis_handle, find_kafka() as kafka_handle:
        kafka_origin = (
            f"Apache Kafka {KAFKA_VERSION} started by dtpyfw.testing"
            if kafka_handle.origin == "process"
            else f"found: {kafka_handle.origin}"
        )
        settings = KafkaSettings(
            bootstrap_servers=bootstrap_of(kafka_handle).split(","),
            producer={"linger_ms": 5},
            consumer={"fetch_max_wait": 0.05},
        )
        results = kafka_cases(settings, kafka_handle)
        url = redis_handle.url.rsplit("/", 1)[0] + "/14"
        redis.Redis.from_url(url).flushdb()
        results += redis_cases(url)
    report(
        "messaging",
        results,
        title=f"Messaging wrappers vs raw clients ({MESSAGES:,} messages, best of {REPEATS})",
        notes=[
            f"Kafka: {kafka_handle.url} ({kafka_origin}); Redis: redis-server, loopback",
            "ratio = ours / raw throughput; target >= 0.95",
        ],
    )


if __name__ == "__main__":
    main()
