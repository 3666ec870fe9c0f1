"""Consumers in a group with manual commits, rebalance hooks, pause/resume and seeking.

:class:`Consumer` wraps one ``kafka.KafkaConsumer`` (auto-commit off). Its
methods must be called from one thread at a time (kafka-python's consumer is
not thread-safe); the runner gives each consumer its own thread.

Rebalances: ``subscribe(topics, on_revoke=..., on_assign=...)`` installs a
``ConsumerRebalanceListener``. ``on_revoke(partitions)`` runs inside
``poll()`` *before* the partitions go to another member: commit what was
handled there (the messaging runner waits for the handlers of those
partitions first), or they are handled again by the next owner.

:class:`AsyncConsumer` is the asyncio facade: every call runs in one
dedicated thread, so the loop never blocks and the consumer is only ever
touched by that thread.
"""

from __future__ import annotations

__all__ = ["AsyncConsumer", "Consumer", "TopicPartition"]

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from dtpyfw.core.errors import MessagingError
from dtpyfw.kafka._client import consumer_config, kafka_errors, require_kafka
from dtpyfw.kafka._settings import KafkaSettings

PartitionsCallback = Callable[[set[Any]], None]


class TopicPartition(NamedTuple):
    """A partition of a topic (kafka-python's own structure has the same fields)."""

    topic: str
    partition: int


class Consumer:
    """A consumer group member with manual commits; see the module docstring.

    ``auto_offset_reset`` is where a group without a committed offset starts
    (``earliest`` or ``latest``); ``overrides`` are extra ``KafkaConsumer`` options.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str | None,
        *,
        auto_offset_reset: str = "earliest",
        **overrides: Any,
    ) -> None:
        kafka_module = require_kafka()
        self.settings = settings
        self.group_id = group_id
        config = consumer_config(
            settings, group_id, auto_offset_reset=auto_offset_reset, **overrides
        )
        try:
            self.client: Any = kafka_module.KafkaConsumer(**config)
        except kafka_errors() as exc:
            raise MessagingError(
                f"cannot connect a Kafka consumer to {', '.join(settings.bootstrap_servers)}: {exc}"
            ) from exc
        self._closed = False

    def __repr__(self) -> str:
        return f"Consumer(group_id={self.group_id!r})"

    def subscribe(
        self,
        topics: Sequence[str],
        *,
        on_revoke: PartitionsCallback | None = None,
        on_assign: PartitionsCallback | None = None,
    ) -> None:
        """Join the group for ``topics``; the callbacks run inside ``poll()`` on rebalance."""
        listener = _listener(on_revoke, on_assign)
        self._call(lambda: self.client.subscribe(topics=list(topics), listener=listener))

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Read exactly these partitions, without a group rebalance."""
        structs = require_kafka().TopicPartition
        self._call(lambda: self.client.assign([structs(*p) for p in partitions]))

    def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[Any]:
        """Records fetched within ``timeout`` seconds (kafka-python ``ConsumerRecord``s)."""
        batches = self._call(
            lambda: self.client.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        )
        return [record for records in batches.values() for record in records]

    def commit(self, offsets: Mapping[Any, int] | None = None) -> None:
        """Commit ``{partition: next offset to read}``, or every position when None."""
        if offsets is None:
            self._call(self.client.commit)
            return
        structs = require_kafka().structs
        payload = {
            _kafka_partition(tp): structs.OffsetAndMetadata(offset, "", -1)
            for tp, offset in offsets.items()
        }
        if payload:
            self._call(lambda: self.client.commit(offsets=payload))

    def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of ``partition``, if any."""
        return self._call(lambda: self.client.committed(_kafka_partition(partition)))  # type: ignore[no-any-return]

    def assignment(self) -> set[Any]:
        """The partitions currently assigned to this member."""
        return set(self._call(self.client.assignment))

    def pause(self, partitions: Iterable[Any] | None = None) -> None:
        """Stop fetching from ``partitions`` (default: all assigned) without leaving the group.

        A partition is a :class:`TopicPartition`, a ``(topic, number)`` pair or
        kafka-python's own structure.
        """
        chosen = (
            [_kafka_partition(p) for p in partitions]
            if partitions is not None
            else list(self.client.assignment())
        )
        if chosen:
            self._call(lambda: self.client.pause(*chosen))

    def resume(self, partitions: Iterable[Any] | None = None) -> None:
        """Fetch again from ``partitions`` (default: every paused one)."""
        chosen = (
            [_kafka_partition(p) for p in partitions]
            if partitions is not None
            else list(self.client.paused())
        )
        if chosen:
            self._call(lambda: self.client.resume(*chosen))

    def seek(self, partition: Any, offset: int) -> None:
        """Read ``partition`` (a TopicPartition or ``(topic, number)``) from ``offset`` next."""
        self._seek(_kafka_partition(partition), offset)

    def seek_to_beginning(self, partitions: Iterable[Any] | None = None) -> None:
        """Read ``partitions`` (default: all assigned) from their oldest kept record."""
        chosen = [_kafka_partition(p) for p in partitions or ()]
        self._call(lambda: self.client.seek_to_beginning(*chosen))

    def seek_to_end(self, partitions: Iterable[Any] | None = None) -> None:
        """Read ``partitions`` (default: all assigned) from the next record written."""
        chosen = [_kafka_partition(p) for p in partitions or ()]
        self._call(lambda: self.client.seek_to_end(*chosen))

    def seek_to_timestamp(self, timestamp_ms: int, partitions: Iterable[Any] | None = None) -> None:
        """Read from the first record at or after ``timestamp_ms`` (brokers 0.10.1+).

        A partition with no such record moves to its end.
        """
        chosen = [_kafka_partition(p) for p in partitions or self.client.assignment()]
        found = self._call(
            lambda: self.client.offsets_for_times(dict.fromkeys(chosen, timestamp_ms))
        )
        ends = self._call(lambda: self.client.end_offsets(chosen))
        for partition in chosen:
            located = found.get(partition)
            target = located.offset if located is not None else ends[partition]
            self._seek(partition, target)

    def _seek(self, partition: Any, offset: int) -> None:
        self._call(lambda: self.client.seek(partition, offset))

    def close(self) -> None:
        """Leave the group (its partitions move at once) without committing; harmless twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.client.close(autocommit=False)
        except kafka_errors() as exc:
            raise MessagingError(f"closing the Kafka consumer failed: {exc}") from exc

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except kafka_errors() as exc:
            raise MessagingError(f"Kafka consumer of group {self.group_id!r}: {exc}") from exc


class AsyncConsumer:
    """Asyncio facade of :class:`Consumer`: each call runs in the consumer's own thread."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="dtpyfw-kafka-consumer"
        )
        self._closed = threading.Event()

    @classmethod
    async def create(
        cls, settings: KafkaSettings, group_id: str | None, **options: Any
    ) -> AsyncConsumer:
        """Create the consumer (which connects) off the event loop."""
        consumer = await asyncio.to_thread(lambda: Consumer(settings, group_id, **options))
        return cls(consumer)

    async def subscribe(self, topics: Sequence[str], **callbacks: Any) -> None:
        """See :meth:`Consumer.subscribe` (callbacks run in the consumer's thread)."""
        await self._run(lambda: self.consumer.subscribe(topics, **callbacks))

    async def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """See :meth:`Consumer.assign`."""
        chosen = list(partitions)
        await self._run(lambda: self.consumer.assign(chosen))

    async def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[Any]:
        """See :meth:`Consumer.poll`."""
        return await self._run(lambda: self.consumer.poll(timeout, max_records))  # type: ignore[no-any-return]

    async def commit(self, offsets: Mapping[Any, int] | None = None) -> None:
        """See :meth:`Consumer.commit`."""
        await self._run(lambda: self.consumer.commit(offsets))

    async def pause(self, partitions: Iterable[Any] | None = None) -> None:
        """See :meth:`Consumer.pause`."""
        await self._run(lambda: self.consumer.pause(partitions))

    async def resume(self, partitions: Iterable[Any] | None = None) -> None:
        """See :meth:`Consumer.resume`."""
        await self._run(lambda: self.consumer.resume(partitions))

    async def seek_to_beginning(self, partitions: Iterable[Any] | None = None) -> None:
        """See :meth:`Consumer.seek_to_beginning`."""
        await self._run(lambda: self.consumer.seek_to_beginning(partitions))

    async def seek_to_end(self, partitions: Iterable[Any] | None = None) -> None:
        """See :meth:`Consumer.seek_to_end`."""
        await self._run(lambda: self.consumer.seek_to_end(partitions))

    async def seek_to_timestamp(
        self, timestamp_ms: int, partitions: Iterable[Any] | None = None
    ) -> None:
        """See :meth:`Consumer.seek_to_timestamp`."""
        await self._run(lambda: self.consumer.seek_to_timestamp(timestamp_ms, partitions))

    async def close(self) -> None:
        """Leave the group and stop the thread; harmless twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            await self._run(self.consumer.close)
        finally:
            self._thread.shutdown(wait=False)

    async def __aenter__(self) -> AsyncConsumer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(self, call: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)


def _kafka_partition(partition: Any) -> Any:
    structs = require_kafka().structs
    if isinstance(partition, structs.TopicPartition):
        return partition
    topic, number = partition
    return structs.TopicPartition(topic, number)


def _listener(on_revoke: PartitionsCallback | None, on_assign: PartitionsCallback | None) -> Any:
    base = require_kafka().ConsumerRebalanceListener

    class Listener(base):  # type: ignore[misc, valid-type]  # kafka-python ships no type hints
        def on_partitions_revoked(self, revoked: Any) -> None:
            if on_revoke is not None:
                on_revoke(set(revoked))

        def on_partitions_assigned(self, assigned: Any) -> None:
            if on_assign is not None:
                on_assign(set(assigned))

    return Listener()
