"""Messages on Redis streams, read by consumer groups.

- **Publishing** is one ``XADD <channel> MAXLEN ~ <max_length>`` (or
  ``MINID ~ <now - max_age>``) of a single field ``m`` holding the
  serialised message. It returns once Redis has stored it; connection
  errors and timeouts (a restarting server, ``LOADING``) are retried under
  ``publish_retry`` before :class:`~dtpyfw.core.errors.MessagingError`.
- **Consuming** (:meth:`RedisStreamsTransport.inboxes`, driven by a runner):
  one ``XGROUP`` per (channel, group), created on first use from the start
  of the stream (``start_from="earliest"``) or from now (``"latest"``);
  ``XREADGROUP ... BLOCK`` reads; acknowledgements are buffered and sent with
  the next read, in the same round trip (``XACK``).
- **Reclaiming**: every ``claim_interval`` seconds each inbox runs
  ``XAUTOCLAIM`` for messages delivered to any consumer of its group more
  than ``claim_idle`` seconds ago and never acknowledged (their consumer
  crashed). Keep ``claim_idle`` above your slowest handler, or a message
  still being handled is handed out again.
- **Poison messages end**: a reclaimed message that Redis has delivered more
  than ``max_deliveries`` times (its delivery count, which XAUTOCLAIM
  raises and XPENDING reports) is dead-lettered instead of handed out
  again, with the count as the reason: a message whose handler kills its
  process each time cannot cycle through the group forever.
- **Dead letters** go to ``<channel><dead_letter_suffix>`` as a JSON record
  (field ``dead_letter``), written and acknowledged in one ``MULTI``.
- Trimming can drop messages a slow group has not read yet: size
  ``max_length``/``max_age`` for the slowest consumer you accept.
"""

from __future__ import annotations

__all__ = ["RedisStreamsTransport"]

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from dtpyfw.core._extras import require
from dtpyfw.core.errors import MessagingError
from dtpyfw.core.retry import RetryPolicy
from dtpyfw.messaging._broker import (
    ChannelNames,
    Delivery,
    Inbox,
    Subscription,
    dead_letter_record,
    read_dead_letter_record,
)
from dtpyfw.messaging._bus import AsyncConsumer, Consumer
from dtpyfw.messaging._delivery import DeadLetter, aretry_call, retry_call
from dtpyfw.messaging._message import InvalidMessage, Message
from dtpyfw.messaging._serializer import JsonSerializer, Serializer, decode_message

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from dtpyfw.messaging._settings import MessagingSettings

logger = logging.getLogger("dtpyfw.messaging")

_FIELD = b"m"
_DEAD_LETTER_FIELD = b"dead_letter"
_DEFAULT_PUBLISH_RETRY = RetryPolicy(attempts=8, initial_delay=0.05, max_delay=1.0)


class RedisStreamsTransport:
    """Events and commands on Redis streams; see the module docstring.

    ``client`` / ``async_client`` are redis-py clients or zero-argument
    callables returning one (or an awaitable of one), resolved at first use.
    With ``owns_clients``, ``close``/``aclose`` close them.
    """

    def __init__(
        self,
        client: Any,
        async_client: Any = None,
        *,
        names: ChannelNames | None = None,
        serializer: Serializer | None = None,
        publish_retry: RetryPolicy | None = None,
        max_length: int | None = 1_000_000,
        max_age: float | None = None,
        claim_idle: float = 60.0,
        claim_interval: float = 5.0,
        max_deliveries: int = 5,
        start_from: Literal["earliest", "latest"] = "earliest",
        max_block: float = 4.0,
        owns_clients: bool = False,
    ) -> None:
        redis_module = require("redis", "redis")
        self.names = names or ChannelNames()
        self.serializer = serializer or JsonSerializer()
        self.errors: tuple[type[BaseException], ...] = (redis_module.RedisError, OSError)
        retryable = (redis_module.ConnectionError, redis_module.TimeoutError)
        self.publish_retry = (publish_retry or _DEFAULT_PUBLISH_RETRY).model_copy(
            update={"retry_on": retryable}
        )
        self.max_length = max_length
        self.max_age = max_age
        self.claim_idle = claim_idle
        self.claim_interval = claim_interval
        self.max_deliveries = max_deliveries
        self.start_from = start_from
        self.max_block = max_block
        self._owns_clients = owns_clients
        self._client_source = client
        self._async_client_source = async_client
        self._client: redis.Redis | None = None
        self._async_client: redis.asyncio.Redis | None = None
        self._guard = threading.Lock()
        self._trim_length_args: tuple[bytes, ...] = (
            (b"MAXLEN", b"~", b"%d" % max_length) if max_length is not None else ()
        )
        self._trim_length: dict[str, Any] = (
            {"maxlen": max_length, "approximate": True} if max_length is not None else {}
        )

    @classmethod
    def from_settings(
        cls,
        settings: MessagingSettings,
        client: Any,
        async_client: Any = None,
        *,
        serializer: Serializer | None = None,
        socket_timeout: float = 5.0,
    ) -> RedisStreamsTransport:
        """A transport configured by the ``messaging`` section, over the given clients."""
        streams = settings.redis
        return cls(
            client,
            async_client,
            names=ChannelNames(
                settings.channel_prefix,
                settings.command_suffix,
                settings.dead_letter_suffix,
                settings.group_prefix,
            ),
            serializer=serializer,
            publish_retry=settings.publish_retry,
            max_length=streams.max_length,
            max_age=streams.max_age,
            claim_idle=streams.claim_idle,
            claim_interval=streams.claim_interval,
            max_deliveries=streams.max_deliveries,
            start_from=settings.start_from,
            # A blocking read must end before the socket times out.
            max_block=socket_timeout * 0.8,
        )

    def __repr__(self) -> str:
        return f"RedisStreamsTransport(prefix={self.names.prefix!r})"

    # -- publishing ------------------------------------------------------------------
    def publish(self, message: Message, consumer: Consumer) -> None:
        """XADD the event to its channel; every group reading it gets a copy."""
        self.add(self.names.event(message.type), self.serializer.dumps(message))

    def send(self, message: Message, consumer: Consumer) -> None:
        """XADD the command to its channel, read by the type's one handling group."""
        self.add(self.names.command(message.type), self.serializer.dumps(message))

    async def apublish(self, message: Message, consumer: AsyncConsumer) -> None:
        """Async twin of :meth:`publish`."""
        await self.aadd(self.names.event(message.type), self.serializer.dumps(message))

    async def asend(self, message: Message, consumer: AsyncConsumer) -> None:
        """Async twin of :meth:`send`."""
        await self.aadd(self.names.command(message.type), self.serializer.dumps(message))

    def add(self, channel: str, raw: bytes) -> bytes:
        """XADD ``raw`` to ``channel`` (with retries); the entry id."""
        client = self._client or self.client()
        # A bytes command with bytes arguments: redis-py sends it as is, skipping
        # xadd()'s argument handling, which costs a tenth of a loopback round trip.
        command = (b"XADD", channel, *self._trim_args(), b"*", _FIELD, raw)
        try:
            try:
                return cast(bytes, client.execute_command(*command))  # type: ignore[no-untyped-call]
            except self.publish_retry.retry_on:
                if self.publish_retry.attempts == 1:
                    raise
            # The first try failed on the connection: the policy's retries take over.
            retries = self.publish_retry.model_copy(
                update={"attempts": self.publish_retry.attempts - 1}
            )
            return cast(bytes, retry_call(retries, client.execute_command, *command))
        except self.errors as exc:
            raise MessagingError(f"publish to Redis stream {channel!r} failed: {exc}") from exc

    async def aadd(self, channel: str, raw: bytes) -> bytes:
        """Async twin of :meth:`add`."""
        client = await self.async_client()
        try:
            entry: bytes = await aretry_call(
                self.publish_retry, client.xadd, channel, {_FIELD: raw}, **self._trim()
            )
        except self.errors as exc:
            raise MessagingError(f"publish to Redis stream {channel!r} failed: {exc}") from exc
        return entry

    # -- consuming -------------------------------------------------------------------
    def inboxes(self, subscriptions: Sequence[Subscription]) -> list[Inbox]:
        """One inbox per consumer group, reading every channel of that group."""
        by_group: dict[str, list[str]] = {}
        for subscription in subscriptions:
            channels = by_group.setdefault(subscription.group, [])
            channel = self.names.of(subscription)
            if channel not in channels:
                channels.append(channel)
        consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        return [
            _RedisInbox(self, group, channels, consumer) for group, channels in by_group.items()
        ]

    def read_dead_letters(
        self, type: str, *, command: bool = False, limit: int = 100
    ) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters of the channel of ``type``."""
        channel = self.names.command(type) if command else self.names.event(type)
        try:
            entries = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                self.client().xrange(self.names.dead_letter(channel), count=limit),
            )
        except self.errors as exc:
            raise MessagingError(f"reading dead letters of {channel!r} failed: {exc}") from exc
        return [_dead_letter(fields.get(_DEAD_LETTER_FIELD, b"{}")) for _id, fields in entries]

    # -- health and lifecycle --------------------------------------------------------
    def ping(self) -> None:
        """PING; MessagingError when Redis does not answer."""
        try:
            self.client().ping()
        except self.errors as exc:
            raise MessagingError(f"Redis streams unreachable: {exc}") from exc

    async def aping(self) -> None:
        """Async twin of :meth:`ping`."""
        try:
            client = await self.async_client()
            await client.ping()  # type: ignore[misc]  # redis-py types ping() for both twins
        except self.errors as exc:
            raise MessagingError(f"Redis streams unreachable: {exc}") from exc

    def close(self) -> None:
        """Close the sync client if this transport made it."""
        with self._guard:
            client, self._client = self._client, None
        if client is not None and self._owns_clients:
            client.close()

    async def aclose(self) -> None:
        """Close the async client if this transport made it."""
        with self._guard:
            client, self._async_client = self._async_client, None
        if client is not None and self._owns_clients:
            await client.aclose()

    def client(self) -> redis.Redis:
        """The sync client (created on first use)."""
        client = self._client
        if client is None:
            with self._guard:
                if self._client is None:
                    source = self._client_source
                    self._client = source() if callable(source) else source
                client = self._client
        assert client is not None
        return client

    async def async_client(self) -> redis.asyncio.Redis:
        """The asyncio client (created on first use)."""
        client = self._async_client
        if client is None:
            source = self._async_client_source
            if source is None:
                raise MessagingError("this RedisStreamsTransport has no async client")
            value = source() if callable(source) else source
            if _pending(value):
                value = await value
            with self._guard:
                client = self._async_client = self._async_client or value
        return client

    def _trim(self) -> dict[str, Any]:
        """XADD's trimming arguments: MINID ~ for max_age, else MAXLEN ~ for max_length."""
        if self.max_age is not None:
            oldest = int((time.time() - self.max_age) * 1000)
            return {"minid": f"{max(oldest, 0)}-0", "approximate": True}
        return self._trim_length

    def _trim_args(self) -> tuple[bytes, ...]:
        """:meth:`_trim` as raw XADD arguments."""
        if self.max_age is not None:
            oldest = max(int((time.time() - self.max_age) * 1000), 0)
            return (b"MINID", b"~", b"%d-0" % oldest)
        return self._trim_length_args


class _RedisInbox:
    """One consumer group's reader of its streams; see the module docstring."""

    def __init__(
        self, transport: RedisStreamsTransport, group: str, channels: Sequence[str], consumer: str
    ) -> None:
        self.group = group
        self.channels = tuple(channels)
        self.consumer = consumer
        self._group = transport.names.group(group)  # its name on the broker
        self._transport = transport
        self._client = transport.client()
        self._streams = dict.fromkeys(self.channels, ">")
        self._names = {channel.encode(): channel for channel in self.channels}
        self._acks: dict[str, list[bytes]] = {}
        self._acks_lock = threading.Lock()
        self._claim_from = dict.fromkeys(self.channels, "0-0")
        self._next_claim = 0.0
        self._ensure_groups()

    def __repr__(self) -> str:
        return f"<Redis inbox of group {self.group!r} on {', '.join(self.channels)}>"

    def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        """Reclaimed messages first, then new ones (blocking up to ``timeout``)."""
        if limit <= 0:
            self.flush()
            return []
        found: list[Delivery] = []
        if time.monotonic() >= self._next_claim:
            found = self._claim(limit)
        room = limit - len(found)
        if room <= 0:
            return found
        block: int | None = None
        if not found and timeout > 0:
            block = max(1, int(min(timeout, self._transport.max_block) * 1000))
        acks = self._take_acks()
        pipe = self._client.pipeline(transaction=False)
        for channel, ids in acks.items():
            pipe.xack(channel, self._group, *ids)
        pipe.xreadgroup(self._group, self.consumer, self._streams, count=room, block=block)  # type: ignore[arg-type]
        try:
            replies = pipe.execute()
        except BaseException as exc:
            self._return_acks(acks)
            if "NOGROUP" in str(exc):  # the server lost its data (restarted without persistence)
                self._ensure_groups()
            raise
        for stream, entries in _stream_items(replies[-1]):
            channel = self._names.get(stream) or stream.decode()
            for entry_id, fields in entries:
                found.append(self._delivery(channel, entry_id, fields))
        return found

    def ack(self, delivery: Delivery) -> None:
        """Buffer an XACK; sent with the next read or flush."""
        with self._acks_lock:
            self._acks.setdefault(delivery.channel, []).append(delivery.token)

    def dead_letter(
        self, delivery: Delivery, error: str, attempts: int, message: Message | None = None
    ) -> None:
        """XADD the record to the dead-letter stream and XACK the entry, in one MULTI."""
        if message is None:
            try:
                message = delivery.decode()
            except InvalidMessage:
                message = None
        record = dead_letter_record(delivery, error, attempts, message)
        target = self._transport.names.dead_letter(delivery.channel)
        trim = self._transport._trim()

        def write() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.xadd(target, {_DEAD_LETTER_FIELD: record}, **trim)
            pipe.xack(delivery.channel, self._group, delivery.token)
            pipe.execute()

        try:
            retry_call(self._transport.publish_retry, write)
        except self._transport.errors as exc:
            raise MessagingError(f"dead-lettering to {target!r} failed: {exc}") from exc

    def flush(self) -> None:
        """Send buffered XACKs."""
        acks = self._take_acks()
        if not acks:
            return
        pipe = self._client.pipeline(transaction=False)
        for channel, ids in acks.items():
            pipe.xack(channel, self._group, *ids)
        try:
            pipe.execute()
        except BaseException:
            self._return_acks(acks)
            raise

    def pause(self) -> None:
        """Nothing to do: a full runner simply stops reading."""

    def resume(self) -> None:
        """Nothing to do."""

    def close(self) -> None:
        """Flush acknowledgements; forget this consumer if it holds no pending messages."""
        self.flush()
        for channel in self.channels:
            try:
                pending = self._client.xpending_range(
                    channel, self._group, min="-", max="+", count=1, consumername=self.consumer
                )
                if not pending:
                    self._client.xgroup_delconsumer(channel, self._group, self.consumer)
            except self._transport.errors:
                logger.debug("could not remove consumer %s from %s", self.consumer, channel)

    # -- helpers ---------------------------------------------------------------------
    def _ensure_groups(self) -> None:
        redis_module = require("redis", "redis")
        start = "0" if self._transport.start_from == "earliest" else "$"
        for channel in self.channels:
            try:
                self._client.xgroup_create(channel, self._group, id=start, mkstream=True)
            except redis_module.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise MessagingError(
                        f"cannot create group {self._group!r} on {channel!r}: {exc}"
                    ) from exc

    def _claim(self, limit: int) -> list[Delivery]:
        idle_ms = int(self._transport.claim_idle * 1000)
        found: list[Delivery] = []
        for channel in self.channels:
            room = limit - len(found)
            if room <= 0:
                return found  # more next time, without waiting for the interval
            reply: list[Any] = self._client.xautoclaim(  # type: ignore[assignment]
                channel,
                self._group,
                self.consumer,
                min_idle_time=idle_ms,
                start_id=self._claim_from[channel],
                count=room,
            )
            next_start, entries = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            self._claim_from[channel] = (
                next_start.decode() if isinstance(next_start, bytes) else str(next_start)
            )
            live = [(entry_id, fields) for entry_id, fields in entries if fields is not None]
            deleted += [entry_id for entry_id, fields in entries if fields is None]
            counts = self._delivery_counts(channel, [entry_id for entry_id, _ in live])
            for entry_id, fields in live:
                delivery = self._delivery(channel, entry_id, fields)
                times = counts.get(entry_id, 0)
                if times > self._transport.max_deliveries:
                    self._dead_letter_poison(delivery, times)
                else:
                    found.append(delivery)
            if deleted:  # trimmed away while pending: nothing left to handle
                self._client.xack(channel, self._group, *deleted)
            if entries:
                logger.info(
                    "reclaimed %d message(s) of %s idle for over %gs",
                    len(entries),
                    channel,
                    self._transport.claim_idle,
                    extra={"channel": channel, "group": self.group, "count": len(entries)},
                )
        if all(start == "0-0" for start in self._claim_from.values()):
            self._next_claim = time.monotonic() + self._transport.claim_interval
        return found

    def _delivery_counts(self, channel: str, ids: list[bytes]) -> dict[bytes, int]:
        """How many times Redis delivered each of ``ids`` (claimed just now, so pending)."""
        if not ids:
            return {}
        # One exact XPENDING per entry, pipelined: one round trip, and other pending
        # entries between them cannot crowd ours out of a range reply.
        pipe = self._client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xpending_range(channel, self._group, min=entry_id, max=entry_id, count=1)
        counts: dict[bytes, int] = {}
        for entry_id, reply in zip(ids, pipe.execute(), strict=True):
            if reply:
                counts[entry_id] = int(reply[0]["times_delivered"])
        return counts

    def _dead_letter_poison(self, delivery: Delivery, times: int) -> None:
        reason = (
            f"delivered {times} times without an acknowledgement (max_deliveries "
            f"{self._transport.max_deliveries}): its handler's consumers died or timed out"
        )
        logger.error(
            "dead-lettering %s of %s: %s",
            delivery.token,
            delivery.channel,
            reason,
            extra={"channel": delivery.channel, "group": self.group, "deliveries": times},
        )
        self.dead_letter(delivery, reason, times)

    def _delivery(self, channel: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Delivery:
        return Delivery(channel, self.group, fields.get(_FIELD, b""), entry_id)

    def _take_acks(self) -> dict[str, list[bytes]]:
        with self._acks_lock:
            acks, self._acks = self._acks, {}
        return acks

    def _return_acks(self, acks: dict[str, list[bytes]]) -> None:
        with self._acks_lock:
            for channel, ids in acks.items():
                self._acks.setdefault(channel, []).extend(ids)


def _stream_items(reply: Any) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """XREADGROUP's reply as (stream, entries), for RESP2 (list) and RESP3 (dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(stream, entries[0] if entries else []) for stream, entries in reply.items()]
    return [(stream, entries) for stream, entries in reply]


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


def _pending(value: object) -> bool:
    import asyncio
    import inspect

    return inspect.iscoroutine(value) or asyncio.isfuture(value)
