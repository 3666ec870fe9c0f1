"""The in-process transport: the embedded default and the test double.

:class:`MemoryTransport` delivers inside ``publish`` / ``send``, before they
return. Each delivery gets a copy of the message decoded from its wire form,
exactly as a network transport would hand it over (so ``data`` arrives as
plain JSON, or as the registered model when the bus has a
:class:`~dtpyfw.messaging.TypeRegistry`).

Delivery is at-least-once: a handler that raises is retried under the
transport's :class:`~dtpyfw.core.retry.RetryPolicy`; after the last attempt
the message is appended to :attr:`MemoryTransport.dead_letters`, an ERROR is
logged to ``dtpyfw.messaging``, and delivery carries on with the next group
and the next message. Handler failures never make ``publish`` raise.
"""

from __future__ import annotations

__all__ = ["MemoryTransport"]

import threading
from collections import deque
from collections.abc import Sequence

from dtpyfw.core.retry import RetryPolicy
from dtpyfw.messaging._broker import Inbox, Subscription
from dtpyfw.messaging._bus import AsyncConsumer, Consumer
from dtpyfw.messaging._delivery import DeadLetter, Dispatcher, Failure, log_dead_letter
from dtpyfw.messaging._idempotency import IdempotencyStore
from dtpyfw.messaging._message import Message
from dtpyfw.messaging._serializer import JsonSerializer, Serializer, decode_message


class MemoryTransport:
    """Delivers messages in process, immediately, at least once.

    ``published`` keeps the last ``max_published`` messages accepted (events
    and commands), oldest first; ``dead_letters`` keeps every dead letter.
    """

    def __init__(
        self,
        *,
        retry: RetryPolicy | None = None,
        max_published: int = 1000,
        serializer: Serializer | None = None,
        idempotency: IdempotencyStore | None = None,
        skip_processed: bool = False,
    ) -> None:
        self.retry = retry if retry is not None else RetryPolicy()
        self.serializer = serializer if serializer is not None else JsonSerializer()
        self.published: deque[Message] = deque(maxlen=max_published)
        self.dead_letters: list[DeadLetter] = []
        self._dispatcher = Dispatcher(
            self.retry, idempotency=idempotency, skip_processed=skip_processed
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"MemoryTransport(<{len(self.published)} published, "
            f"{len(self.dead_letters)} dead letters>)"
        )

    def publish(self, message: Message, consumer: Consumer) -> None:
        """Deliver ``message`` to every group subscribed to its type, one after another."""
        raw = self._accept(message)
        for group in consumer.groups(message.type):
            self._deliver(raw, group, consumer)

    def send(self, message: Message, consumer: Consumer) -> None:
        """Deliver ``message`` to the one group handling its type; none is HandlerNotFound."""
        group = consumer.command_group(message.type)
        raw = self._accept(message)
        self._deliver(raw, group, consumer)

    async def apublish(self, message: Message, consumer: AsyncConsumer) -> None:
        """Async twin of :meth:`publish`."""
        raw = self._accept(message)
        for group in consumer.groups(message.type):
            await self._adeliver(raw, group, consumer)

    async def asend(self, message: Message, consumer: AsyncConsumer) -> None:
        """Async twin of :meth:`send`."""
        group = consumer.command_group(message.type)
        raw = self._accept(message)
        await self._adeliver(raw, group, consumer)

    def ping(self) -> None:
        """Memory is always reachable."""

    async def aping(self) -> None:
        """Memory is always reachable."""

    def inboxes(self, subscriptions: Sequence[Subscription]) -> list[Inbox]:
        """None: messages are delivered inside ``publish``, so a runner has nothing to read."""
        return []

    def close(self) -> None:
        """Nothing to release."""

    async def aclose(self) -> None:
        """Nothing to release."""

    def read_dead_letters(
        self, type: str, *, command: bool = False, limit: int = 100
    ) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters of messages of ``type``."""
        with self._lock:
            found = [d for d in self.dead_letters if d.message and d.message.type == type]
        return found[:limit]

    def _accept(self, message: Message) -> bytes:
        raw = self.serializer.dumps(message)  # data a real transport could not carry fails here
        self.published.append(message)
        return raw

    def _deliver(self, raw: bytes, group: str, consumer: Consumer) -> None:
        message = decode_message(raw)
        failure = self._dispatcher.run(consumer, message, group)
        if failure is not None:
            self._dead_letter(message, group, failure, raw)

    async def _adeliver(self, raw: bytes, group: str, consumer: AsyncConsumer) -> None:
        message = decode_message(raw)
        failure = await self._dispatcher.arun(consumer, message, group)
        if failure is not None:
            self._dead_letter(message, group, failure, raw)

    def _dead_letter(self, message: Message, group: str, failure: Failure, raw: bytes) -> None:
        dead = DeadLetter(message, group, failure.describe(), message.type, failure.attempts, raw)
        with self._lock:
            self.dead_letters.append(dead)
        log_dead_letter(message, group, failure, channel=message.type)
