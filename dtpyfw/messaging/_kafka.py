"""Messages on Kafka topics, read by consumer groups with manual commits.

- **Publishing** follows the CloudEvents Kafka protocol binding, with the
  message's ``subject`` as the key (one subject, one partition, order kept),
  and waits for the acknowledgement (``acks`` from the ``kafka`` section).
  With ``serializer: json`` a record is in *structured* mode: the value is
  the CloudEvents JSON, ``content-type`` is ``application/cloudevents+json``,
  and the attributes also travel as ``ce_`` headers for routing without
  decoding. With ``serializer: binary`` it is in *binary* mode: the value is
  the data itself (raw bytes, or JSON), ``content-type`` is the message's
  ``datacontenttype`` and the attributes are ``ce_`` headers. Brokers
  without headers (before 0.11) get the serializer's own bytes. Retriable
  failures are retried under ``publish_retry``.
- **Topics** are created through the admin API on first use when
  ``messaging.kafka.create_topics`` is on and the broker has one; otherwise
  the broker auto-creates them.
- **Consuming**: one ``KafkaConsumer`` per consumer group, auto-commit off.
  Offsets are committed every ``kafka.consumer.commit_interval`` seconds,
  at shutdown, before partitions are revoked in a rebalance, and whenever
  ``messaging.max_in_flight`` records are handed out but uncommitted (so a
  crash redelivers at most that many), and only up to the first message of
  each partition not yet handled. A commit the broker refuses mid-rebalance
  is not lost: if the partition comes back, the consumer resumes where it
  got to. A full runner pauses its partitions (staying in the group) and
  resumes them when handlers catch up. With ``concurrency > 1`` messages of one partition may
  be handled concurrently: set it to 1 for strict per-partition order.
- **Dead letters** go to ``<topic><dead_letter_suffix>`` as a JSON record
  (plus ``dlq_*`` headers where supported), then the message is committed:
  a poison message never blocks its partition.
- **Reading**, the ``content-type`` header decides, before the value is
  looked at: ``application/cloudevents...`` is structured mode; any other
  with a ``ce_specversion`` header is binary mode (attributes from the
  headers, the value is the data); a record without headers is one of our
  serializers' formats. So binary-mode data that happens to look like an
  envelope is never mistaken for one.
"""

from __future__ import annotations

__all__ = ["KafkaTransport"]

import asyncio
import collections
import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic_core import PydanticSerializationError, to_json

from dtpyfw.core.errors import MessagingError
from dtpyfw.core.retry import RetryPolicy
from dtpyfw.kafka._admin import create_topics
from dtpyfw.kafka._consumer import Consumer
from dtpyfw.kafka._producer import AsyncProducer, Producer, RetriablePublishFailed
from dtpyfw.kafka._settings import KafkaSettings
from dtpyfw.messaging._broker import (
    ChannelNames,
    Delivery,
    Inbox,
    Subscription,
    dead_letter_record,
    read_dead_letter_record,
)
from dtpyfw.messaging._bus import AsyncConsumer
from dtpyfw.messaging._bus import Consumer as BusConsumer
from dtpyfw.messaging._delivery import DeadLetter, aretry_call, retry_call
from dtpyfw.messaging._message import InvalidMessage, Message
from dtpyfw.messaging._serializer import (
    BinarySerializer,
    JsonSerializer,
    Serializer,
    decode_message,
)

if TYPE_CHECKING:
    from dtpyfw.messaging._settings import MessagingSettings

logger = logging.getLogger("dtpyfw.messaging")

_LEGAL_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_DEFAULT_PUBLISH_RETRY = RetryPolicy(attempts=8, initial_delay=0.05, max_delay=1.0)
_KEEPALIVE_POLL = 1.0  # seconds a full consumer goes without polling (paused) at most


class KafkaTransport:
    """Events and commands on Kafka topics; see the module docstring."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        names: ChannelNames | None = None,
        serializer: Serializer | None = None,
        publish_retry: RetryPolicy | None = None,
        start_from: Literal["earliest", "latest"] = "earliest",
        create_topics: bool = True,
        partitions: int = 3,
        replication_factor: int = 1,
        max_uncommitted: int = 256,
    ) -> None:
        self.settings = settings
        self.max_uncommitted = max_uncommitted
        self.names = names or ChannelNames()
        self.serializer = serializer or JsonSerializer()
        self.publish_retry = (publish_retry or _DEFAULT_PUBLISH_RETRY).model_copy(
            update={"retry_on": (RetriablePublishFailed,)}
        )
        self.start_from = start_from
        self.create_topics = create_topics
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.producer = Producer(settings)
        self._async_producer: AsyncProducer | None = None
        self._headers: bool | None = None
        self._known_topics: set[str] = set()
        self._admin_api = create_topics
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: MessagingSettings,
        kafka_settings: KafkaSettings,
        *,
        serializer: Serializer | None = None,
    ) -> KafkaTransport:
        """A transport configured by the ``messaging`` and ``kafka`` sections."""
        return cls(
            kafka_settings,
            names=ChannelNames(
                settings.channel_prefix,
                settings.command_suffix,
                settings.dead_letter_suffix,
                settings.group_prefix,
            ),
            serializer=serializer,
            publish_retry=settings.publish_retry,
            start_from=settings.start_from,
            create_topics=settings.kafka.create_topics,
            partitions=settings.kafka.partitions,
            replication_factor=settings.kafka.replication_factor,
            max_uncommitted=settings.max_in_flight,
        )

    def __repr__(self) -> str:
        return f"KafkaTransport(bootstrap_servers={self.settings.bootstrap_servers!r})"

    # -- publishing ------------------------------------------------------------------
    def publish(self, message: Message, consumer: BusConsumer) -> None:
        """Send the event to its topic and wait for the acknowledgement."""
        self.send_record(self.names.event(message.type), message)

    def send(self, message: Message, consumer: BusConsumer) -> None:
        """Send the command to its topic, read by the type's one handling group."""
        self.send_record(self.names.command(message.type), message)

    async def apublish(self, message: Message, consumer: AsyncConsumer) -> None:
        """Async twin of :meth:`publish` (the blocking parts run in the producer's thread)."""
        await self.asend_record(self.names.event(message.type), message)

    async def asend(self, message: Message, consumer: AsyncConsumer) -> None:
        """Async twin of :meth:`send`."""
        await self.asend_record(self.names.command(message.type), message)

    def send_record(self, topic: str, message: Message) -> None:
        """Serialise ``message`` and send it to ``topic``, confirmed, with retries."""
        self.ensure_topics([topic])
        value, headers = encode_record(message, self.serializer, self.headers_supported())
        key = message.subject.encode() if message.subject else None
        retry_call(
            self.publish_retry, self.producer.publish, topic, value, key=key, headers=headers
        )

    async def asend_record(self, topic: str, message: Message) -> None:
        """Async twin of :meth:`send_record`."""
        if topic not in self._known_topics or self._headers is None:
            await asyncio.to_thread(self.ensure_topics, [topic])
            await asyncio.to_thread(self.headers_supported)
        value, headers = encode_record(message, self.serializer, bool(self._headers))
        key = message.subject.encode() if message.subject else None
        producer = self._async()
        await aretry_call(
            self.publish_retry, producer.publish, topic, value, key=key, headers=headers
        )

    def headers_supported(self) -> bool:
        """True when the brokers carry record headers (asks them once)."""
        if self._headers is None:
            self._headers = self.producer.supports_headers
        return self._headers

    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Check topic names; create the new ones through the admin API when possible."""
        new = [topic for topic in topics if topic not in self._known_topics]
        if not new:
            return
        for topic in new:
            if not _LEGAL_TOPIC.match(topic):
                raise MessagingError(
                    f"{topic!r} is not a legal Kafka topic name (letters, digits, '.', '_', "
                    "'-'; at most 249): rename the message type or set channel_prefix"
                )
        if self._admin_api:
            created = create_topics(
                self.settings,
                new,
                partitions=self.partitions,
                replication_factor=self.replication_factor,
                timeout=self.settings.request_timeout,
            )
            if created is None:
                logger.info("the Kafka brokers have no CreateTopics API: topics auto-create")
                self._admin_api = False
        if not self._admin_api:
            # Ask for their metadata: that makes an auto-creating broker create them now,
            # not while a consumer group is joining (which would stall the join).
            for topic in new:
                self.producer.partitions_for(topic)
        with self._lock:
            self._known_topics.update(new)

    # -- consuming -------------------------------------------------------------------
    def inboxes(self, subscriptions: Sequence[Subscription]) -> list[Inbox]:
        """One consumer (a group member) per consumer group, subscribed to its topics."""
        by_group: dict[str, list[str]] = {}
        for subscription in subscriptions:
            topics = by_group.setdefault(subscription.group, [])
            topic = self.names.of(subscription)
            if topic not in topics:
                topics.append(topic)
        self.ensure_topics([topic for topics in by_group.values() for topic in topics])
        return [_KafkaInbox(self, group, topics) for group, topics in by_group.items()]

    def read_dead_letters(
        self, type: str, *, command: bool = False, limit: int = 100, timeout: float = 10.0
    ) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters of the topic of ``type`` (reads it from the start)."""
        channel = self.names.command(type) if command else self.names.event(type)
        topic = self.names.dead_letter(channel)
        self.ensure_topics([topic])
        reader = Consumer(self.settings, None, auto_offset_reset="earliest")
        try:
            partitions = [(topic, p) for p in sorted(self.producer.partitions_for(topic))]
            reader.assign(partitions)
            reader.seek_to_beginning(partitions)
            ends = reader.client.end_offsets([_struct(p) for p in partitions])
            wanted = {p: ends[_struct(p)] for p in partitions if ends[_struct(p)] > 0}
            found: list[Any] = []
            deadline = time.monotonic() + timeout
            while wanted and time.monotonic() < deadline and len(found) < limit:
                for record in reader.poll(0.1):
                    found.append(record)
                    position = (record.topic, record.partition)
                    if position in wanted and record.offset + 1 >= wanted[position]:
                        del wanted[position]
        finally:
            reader.close()
        found.sort(key=lambda r: (r.timestamp or 0, r.partition, r.offset))
        return [_dead_letter(record.value) for record in found[:limit]]

    # -- health and lifecycle --------------------------------------------------------
    def ping(self) -> None:
        """A broker answers; MessagingError if none does."""
        self.producer.ping()

    async def aping(self) -> None:
        """Async twin of :meth:`ping`."""
        await asyncio.to_thread(self.producer.ping)

    def close(self) -> None:
        """Flush and close the producer; harmless twice."""
        self.producer.close()
        if self._async_producer is not None:
            self._async_producer._thread.shutdown(wait=False)

    async def aclose(self) -> None:
        """Flush and close the producer off the event loop."""
        await asyncio.to_thread(self.close)

    def _async(self) -> AsyncProducer:
        if self._async_producer is None:
            with self._lock:
                if self._async_producer is None:
                    self._async_producer = AsyncProducer(self.producer)
        return self._async_producer


_STRUCTURED = "application/cloudevents"
# What dtpyfw's binary frame was labelled with before binary mode: still read as a frame.
_FRAME_CONTENT_TYPE = BinarySerializer.content_type
_HEADER_ATTRIBUTES = (
    ("subject", "subject"),
    ("dataschema", "dataschema"),
    ("traceparent", "traceparent"),
    ("correlationid", "correlation_id"),
)


def encode_record(
    message: Message, serializer: Serializer, headers: bool
) -> tuple[bytes, list[tuple[str, bytes]] | None]:
    """The value and headers of ``message`` as a Kafka record (see the module docstring)."""
    if not headers:
        return serializer.dumps(message), None
    ce_headers = [
        ("ce_specversion", message.specversion.encode()),
        ("ce_id", message.id.encode()),
        ("ce_source", message.source.encode()),
        ("ce_type", message.type.encode()),
    ]
    if message.time is not None:
        ce_headers.append(("ce_time", message.time.isoformat().encode()))
    for name, field in _HEADER_ATTRIBUTES:
        value = getattr(message, field)
        if value is not None:
            ce_headers.append((f"ce_{name}", str(value).encode()))
    if not isinstance(serializer, BinarySerializer):
        return serializer.dumps(message), [
            *ce_headers,
            ("content-type", serializer.content_type.encode()),
        ]
    data = message.data
    if isinstance(data, bytes | bytearray):
        value = bytes(data)
    elif data is None:
        value = b""
    else:
        try:
            value = to_json(data)
        except PydanticSerializationError as exc:
            raise MessagingError(
                f"data of message {message.type!r} cannot be serialised to JSON: {exc}"
            ) from exc
    if message.datacontenttype is not None:
        ce_headers.append(("content-type", message.datacontenttype.encode()))
    return value, ce_headers


def decode_record(value: bytes, headers: Sequence[tuple[str, bytes | None]]) -> Message:
    """The message of a Kafka record in either content mode; InvalidMessage if it is none."""
    content_type: str | None = None
    binary = False
    for name, raw in headers:
        # Names compare case-insensitively; the length test keeps lower() off the
        # other headers of every record (this runs once per message consumed).
        if raw is None:
            continue
        size = len(name)
        if size == 12 and (name == "content-type" or name.lower() == "content-type"):
            content_type = raw.decode(errors="replace")
        elif size == 14 and (name == "ce_specversion" or name.lower() == "ce_specversion"):
            binary = True
    if content_type is None and not binary:
        return decode_message(value)  # no headers: one of our serializers' formats
    if content_type is not None and (
        content_type.lower().startswith(_STRUCTURED) or content_type == _FRAME_CONTENT_TYPE
    ):
        return decode_message(value)
    if not binary:
        raise InvalidMessage(
            f"a record with content-type {content_type!r} and no ce_specversion header "
            "is no CloudEvent"
        )
    attributes: dict[str, Any] = {
        name.lower()[3:]: raw.decode(errors="replace")
        for name, raw in headers
        if raw is not None and name[:3].lower() == "ce_"
    }
    data: Any = value
    if content_type is not None and _is_json(content_type):
        try:
            data = json.loads(value) if value else None
        except ValueError as exc:
            raise InvalidMessage(f"binary-mode record with bad JSON data: {exc}") from exc
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    return Message.received({**attributes, "data": data})


def _is_json(content_type: str) -> bool:
    """``application/json``, ``text/json`` or any ``+json`` media type (parameters ignored)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


class _KafkaDelivery(Delivery):
    """A record; also decodes CloudEvents written in binary mode by other producers."""

    __slots__ = ()

    @property
    def position(self) -> str:
        """``topic[partition]@offset``."""
        (topic, partition), offset = self.token
        return f"{topic}[{partition}]@{offset}"

    def decode(self) -> Message:
        return decode_record(self.raw, self.headers)


class _Partition:
    """Offsets handed out for one partition, in order, and which of them are done."""

    __slots__ = ("done", "order")

    def __init__(self) -> None:
        self.order: collections.deque[int] = collections.deque()
        self.done: set[int] = set()

    def busy(self) -> bool:
        return any(offset not in self.done for offset in self.order)

    def committable(self) -> int | None:
        """Pop the handled prefix; the offset to commit (last popped + 1), if any."""
        last = None
        while self.order and self.order[0] in self.done:
            last = self.order.popleft()
            self.done.discard(last)
        return None if last is None else last + 1


class _KafkaInbox:
    """One consumer group member and its offset book-keeping; see the module docstring."""

    def __init__(self, transport: KafkaTransport, group: str, topics: Sequence[str]) -> None:
        self.group = group
        self.channels = tuple(topics)
        self._transport = transport
        self._settings = transport.settings.consumer
        self._consumer = Consumer(
            transport.settings, transport.names.group(group), auto_offset_reset=transport.start_from
        )
        self._partitions: dict[tuple[str, int], _Partition] = {}
        # Handled but not committed yet (a commit failed in a rebalance): next offset to read.
        self._uncommitted: dict[tuple[str, int], int] = {}
        self._cond = threading.Condition()
        self._revoking = False  # a rebalance waits for handlers: acks must wake it
        self._paused = False
        self._partitions_paused = False
        self._last_poll = time.monotonic()
        self._next_commit = time.monotonic() + self._settings.commit_interval
        self._consumer.subscribe(
            self.channels, on_revoke=self._on_revoke, on_assign=self._on_assign
        )

    def __repr__(self) -> str:
        return f"<Kafka inbox of group {self.group!r} on {', '.join(self.channels)}>"

    def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        """Poll up to ``limit`` records; never more than ``max_uncommitted`` uncommitted.

        Records handed out but not committed yet are what a crash makes the next
        owner handle again, so they are capped, not only the unfinished ones.
        With no room the member still polls (partitions paused) to stay alive.
        """
        if limit > 0:
            room = self._room()
            if room < limit:
                self.flush()  # commit the handled prefix now to make room
                room = self._room()
            limit = min(limit, room)
        if limit <= 0:
            self._maybe_commit()
            if time.monotonic() - self._last_poll < _KEEPALIVE_POLL:
                return []
            # Full for a while: poll with every partition paused, so the member stays in
            # the group and rebalances run. (Pausing drops kafka-python's prefetched
            # records, which is why short stalls do not pause at all.)
            if not self._partitions_paused:
                self._consumer.pause()
                self._partitions_paused = True
            records = self._consumer.poll(0)
        else:
            if self._partitions_paused and not self._paused:
                self._consumer.resume()
                self._partitions_paused = False
            records = self._consumer.poll(timeout, max_records=limit)
        self._last_poll = time.monotonic()
        # Whatever a poll returns is handed out, even when full (a partition assigned
        # meanwhile is not paused): dropping it would move the position past it.
        found: list[Delivery] = []
        if records:
            with self._cond:
                for record in records:
                    position = (record.topic, record.partition)
                    self._partitions.setdefault(position, _Partition()).order.append(record.offset)
            found = [
                _KafkaDelivery(
                    record.topic,
                    self.group,
                    record.value or b"",
                    ((record.topic, record.partition), record.offset),
                    record.headers or (),
                )
                for record in records
            ]
        self._maybe_commit()
        return found

    def _room(self) -> int:
        with self._cond:
            tracked = sum(len(partition.order) for partition in self._partitions.values())
        return self._transport.max_uncommitted - tracked

    def ack(self, delivery: Delivery) -> None:
        """Mark the record handled; committed with the next commit. Thread-safe."""
        position, offset = delivery.token
        with self._cond:
            partition = self._partitions.get(position)
            if partition is not None:  # None: revoked meanwhile, the new owner redelivers
                partition.done.add(offset)
                if self._revoking:
                    self._cond.notify_all()

    def dead_letter(
        self, delivery: Delivery, error: str, attempts: int, message: Message | None = None
    ) -> None:
        """Send the record to the dead-letter topic (confirmed), then mark it handled."""
        if message is None:
            try:
                message = delivery.decode()
            except InvalidMessage:
                message = None
        transport = self._transport
        topic = transport.names.dead_letter(delivery.channel)
        transport.ensure_topics([topic])
        headers: list[tuple[str, bytes]] | None = None
        if transport.headers_supported():
            headers = [*delivery.headers]
            headers += [
                ("dlq_error", error.encode()),
                ("dlq_group", self.group.encode()),
                ("dlq_position", delivery.position.encode()),
            ]
        record = dead_letter_record(delivery, error, attempts, message)
        retry_call(
            transport.publish_retry, transport.producer.publish, topic, record, headers=headers
        )
        self.ack(delivery)

    def flush(self) -> None:
        """Commit the handled prefix of every partition."""
        with self._cond:
            for position, partition in self._partitions.items():
                if (offset := partition.committable()) is not None:
                    self._uncommitted[position] = offset
            offsets = dict(self._uncommitted)
        self._commit(offsets)
        self._next_commit = time.monotonic() + self._settings.commit_interval

    def pause(self) -> None:
        """Stop fetching; the partitions are paused if the stall lasts (see fetch)."""
        self._paused = True

    def resume(self) -> None:
        """Fetch again (resuming paused partitions)."""
        self._paused = False
        if self._partitions_paused:
            self._consumer.resume()
            self._partitions_paused = False

    def close(self) -> None:
        """Commit, then leave the group so the partitions move at once."""
        try:
            self.flush()
        finally:
            self._consumer.close()

    def _maybe_commit(self) -> None:
        if time.monotonic() >= self._next_commit:
            self.flush()

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit; on failure (a rebalance began) keep them to commit, or seek to, later."""
        if not offsets:
            return
        try:
            self._consumer.commit(offsets)
        except MessagingError as exc:
            logger.info(
                "group %r could not commit offsets %s yet: %s",
                self.group,
                offsets,
                exc,
                extra={"group": self.group},
            )
            return
        with self._cond:
            for position, offset in offsets.items():
                if self._uncommitted.get(position) == offset:
                    del self._uncommitted[position]

    def _on_revoke(self, revoked: set[Any]) -> None:
        """Inside poll(): wait for the revoked partitions' handlers, commit, forget them."""
        positions = [(tp.topic, tp.partition) for tp in revoked]
        limit = self._settings.revoke_timeout
        with self._cond:
            self._revoking = True
            self._cond.wait_for(
                lambda: (
                    not any(self._partitions[p].busy() for p in positions if p in self._partitions)
                ),
                timeout=limit,
            )
            self._revoking = False
            for position in positions:
                partition = self._partitions.pop(position, None)
                if partition is not None and (offset := partition.committable()) is not None:
                    self._uncommitted[position] = offset
            offsets = {p: o for p, o in self._uncommitted.items() if p in positions}
        self._commit(offsets)
        if revoked:
            logger.info(
                "group %r gives up %d partition(s) in a rebalance",
                self.group,
                len(revoked),
                extra={"group": self.group},
            )

    def _on_assign(self, assigned: set[Any]) -> None:
        """Inside poll(): resume where *we* got to on partitions whose commit failed.

        A commit refused during a rebalance would otherwise make us (or the next
        owner) handle those messages again from the older committed offset.
        """
        positions = {(tp.topic, tp.partition) for tp in assigned}
        with self._cond:
            for position in list(self._uncommitted):
                if position not in positions:  # another member owns it now
                    del self._uncommitted[position]
            resume = dict(self._uncommitted)
        for position, offset in resume.items():
            self._consumer.seek(position, offset)
        logger.info(
            "group %r now reads %s",
            self.group,
            ", ".join(f"{topic}[{number}]" for topic, number in sorted(positions)) or "nothing",
            extra={"group": self.group},
        )


def _struct(position: tuple[str, int]) -> Any:
    from dtpyfw.kafka._client import require_kafka

    return require_kafka().TopicPartition(*position)


def _dead_letter(record: bytes) -> DeadLetter:
    fields, raw = read_dead_letter_record(record)
    try:
        message: Message | None = decode_message(raw)
    except InvalidMessage:
        message = None
    return DeadLetter(
        message,
        str(fields.get("group", "")),
        str(fields.get("error", "")),
        str(fields.get("channel", "")),
        int(fields.get("attempts", 0)),
        raw,
    )
