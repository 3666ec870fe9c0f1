"""Producers: ``publish`` waits for the broker's acknowledgement, ``publish_nowait`` does not.

:class:`Producer` wraps one ``kafka.KafkaProducer``, created on first use (so
resolving it from the container connects nothing). kafka-python batches in
its own I/O thread: ``publish_nowait`` returns a :class:`PublishFuture` at
once and many of them share a request; ``publish`` is ``publish_nowait``
then ``result()``. ``flush()`` waits for everything sent; ``close()``
flushes first. Records carry a ``key`` (same key, same partition, order
kept) and, on brokers 0.11+, ``headers``.

:class:`AsyncProducer` is the asyncio facade: kafka-python's ``send`` can
block (waiting for metadata or buffer space), so it runs in one dedicated
thread per producer and the acknowledgement resolves an asyncio future;
the event loop never blocks.
"""

from __future__ import annotations

__all__ = ["AsyncProducer", "Producer", "PublishFailed", "PublishFuture", "RecordMetadata"]

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from dtpyfw.core.errors import MessagingError
from dtpyfw.kafka._client import (
    common_config,
    kafka_errors,
    producer_config,
    require_kafka,
    supports_headers,
)
from dtpyfw.kafka._settings import KafkaSettings

Headers = Sequence[tuple[str, bytes]]


class PublishFailed(MessagingError):
    """A record was not acknowledged; ``retriable`` when trying again may succeed."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class RetriablePublishFailed(PublishFailed):
    """A PublishFailed that may succeed when tried again (a broker restarting, a timeout)."""


def _failed(topic: str, exc: BaseException) -> PublishFailed:
    text = f"publish to Kafka topic {topic!r} failed: {exc}"
    if bool(getattr(exc, "retriable", False)) or isinstance(exc, OSError):
        return RetriablePublishFailed(text, retriable=True)
    return PublishFailed(text)


class RecordMetadata(NamedTuple):
    """Where the broker stored a record."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None


class PublishFuture:
    """The acknowledgement of one record; ``result()`` waits for it."""

    __slots__ = ("_future", "_topic")

    def __init__(self, future: Any, topic: str) -> None:
        self._future = future
        self._topic = topic

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """The record's metadata once acknowledged; a failure raises :class:`PublishFailed`."""
        try:
            meta = self._future.get(timeout=timeout)
        except kafka_errors() as exc:
            raise _failed(self._topic, exc) from exc
        return RecordMetadata(meta.topic, meta.partition, meta.offset, meta.timestamp)

    def done(self) -> bool:
        """True once acknowledged or failed."""
        return bool(self._future.is_done)

    def add_done_callback(self, callback: Callable[[PublishFuture], None]) -> None:
        """Call ``callback(self)`` when done (in kafka-python's I/O thread, or now)."""
        self._future.add_both(lambda _value: callback(self))


class Producer:
    """A kafka-python producer configured by ``settings``; see the module docstring.

    ``overrides`` are extra ``KafkaProducer`` options (they win over settings).
    """

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        self.settings = settings
        self._overrides = overrides
        self._producer: Any = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"Producer(bootstrap_servers={self.settings.bootstrap_servers!r})"

    @property
    def client(self) -> Any:
        """The underlying ``KafkaProducer`` (created, and connected, on first use)."""
        producer = self._producer
        if producer is None:
            with self._lock:
                if self._closed:
                    raise MessagingError("this Kafka producer is closed")
                if self._producer is None:
                    kafka_module = require_kafka()
                    config = producer_config(self.settings, **self._overrides)
                    try:
                        self._producer = kafka_module.KafkaProducer(**config)
                    except kafka_errors() as exc:
                        raise MessagingError(
                            f"cannot connect a Kafka producer to "
                            f"{', '.join(self.settings.bootstrap_servers)}: {exc}"
                        ) from exc
                producer = self._producer
        return producer

    @property
    def supports_headers(self) -> bool:
        """True when the broker protocol carries record headers (0.11+)."""
        return supports_headers(self.client.config.get("api_version"))

    def publish(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        timeout: float | None = None,
    ) -> RecordMetadata:
        """Send one record and wait for the broker's acknowledgement."""
        future = self.publish_nowait(
            topic, value, key=key, headers=headers, partition=partition, timestamp_ms=timestamp_ms
        )
        return future.result(self.settings.producer.confirm_timeout if timeout is None else timeout)

    def publish_nowait(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> PublishFuture:
        """Queue one record for its batch; the future resolves on acknowledgement."""
        producer = self.client
        try:
            future = producer.send(
                topic,
                value=value,
                key=key,
                headers=list(headers) if headers else None,
                partition=partition,
                timestamp_ms=timestamp_ms,
            )
        except kafka_errors() as exc:
            raise _failed(topic, exc) from exc
        return PublishFuture(future, topic)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued record is acknowledged (or failed)."""
        producer = self._producer
        if producer is None:
            return
        try:
            producer.flush(timeout=timeout)
        except kafka_errors() as exc:
            raise MessagingError(f"flushing the Kafka producer failed: {exc}") from exc

    def partitions_for(self, topic: str) -> set[int]:
        """The partition numbers of ``topic`` (fetching metadata; may auto-create it)."""
        try:
            return set(self.client.partitions_for(topic) or ())
        except kafka_errors() as exc:
            raise MessagingError(f"no metadata for Kafka topic {topic!r}: {exc}") from exc

    def ping(self, timeout: float | None = None) -> None:
        """Check a broker answers (connecting if needed); MessagingError if none does."""
        limit = self.settings.health_timeout if timeout is None else timeout
        # A private, short-lived client: the producer's own KafkaClient belongs to its
        # sender thread (kafka-python clients are not thread-safe, and polling it from
        # here could hang), and a daemon thread bounds the whole probe by the timeout.
        outcome: list[BaseException | None] = []
        config = common_config(self.settings)

        def probe() -> None:
            from kafka.client_async import KafkaClient  # type: ignore[import-untyped]

            client = None
            try:
                client = KafkaClient(**config)
                client.check_version(timeout=limit)
                outcome.append(None)
            except Exception as exc:
                outcome.append(exc)
            finally:
                if client is not None:
                    client.close()

        require_kafka()
        thread = threading.Thread(target=probe, name="dtpyfw-kafka-ping", daemon=True)
        thread.start()
        thread.join(limit + 1.0)
        servers = ", ".join(self.settings.bootstrap_servers)
        if not outcome:
            raise MessagingError(f"Kafka brokers {servers} did not answer within {limit:g}s")
        if outcome[0] is not None:
            raise MessagingError(f"Kafka brokers {servers} unreachable: {outcome[0]}") from outcome[
                0
            ]

    def close(self, timeout: float | None = None) -> None:
        """Flush, then close; closing twice is harmless."""
        with self._lock:
            producer, self._producer = self._producer, None
            self._closed = True
        if producer is not None:
            producer.close(timeout=timeout)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncProducer:
    """Asyncio facade of :class:`Producer`: ``await publish(...)`` never blocks the loop."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="dtpyfw-kafka-producer"
        )

    @classmethod
    def from_settings(cls, settings: KafkaSettings, **overrides: Any) -> AsyncProducer:
        """An async producer over a new :class:`Producer`."""
        return cls(Producer(settings, **overrides))

    async def publish(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordMetadata:
        """Send one record and await the broker's acknowledgement."""
        future = await self.publish_nowait(
            topic, value, key=key, headers=headers, partition=partition, timestamp_ms=timestamp_ms
        )
        return await future

    async def publish_nowait(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Queue one record; the returned asyncio future resolves on acknowledgement."""
        loop = asyncio.get_running_loop()
        sent = await loop.run_in_executor(
            self._thread,
            lambda: self.producer.publish_nowait(
                topic,
                value,
                key=key,
                headers=headers,
                partition=partition,
                timestamp_ms=timestamp_ms,
            ),
        )
        acknowledged: asyncio.Future[RecordMetadata] = loop.create_future()

        def settle(done: PublishFuture) -> None:
            try:
                outcome: Any = done.result(0)
                setter: Callable[[Any], None] = acknowledged.set_result
            except BaseException as exc:
                outcome, setter = exc, acknowledged.set_exception
            loop.call_soon_threadsafe(_settle, acknowledged, setter, outcome)

        sent.add_done_callback(settle)
        return acknowledged

    async def flush(self, timeout: float | None = None) -> None:
        """Await every queued record's acknowledgement."""
        await asyncio.get_running_loop().run_in_executor(
            self._thread, lambda: self.producer.flush(timeout)
        )

    async def close(self, timeout: float | None = None) -> None:
        """Flush and close the producer and its thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, lambda: self.producer.close(timeout))
        self._thread.shutdown(wait=False)

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _settle(future: asyncio.Future[Any], setter: Callable[[Any], None], outcome: Any) -> None:
    if not future.done():  # the awaiting task may have been cancelled
        setter(outcome)
