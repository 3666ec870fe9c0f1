"""The in-process transport: the embedded default and the test double.

:class:`MemoryTransport` delivers inside ``publish`` / ``send``, before they
return. Each delivery gets a copy of the message decoded from its JSON form,
exactly as a network transport would hand it over (so ``data`` arrives as
plain JSON; decode it with :class:`~dtpyfw.messaging.TypeRegistry`).

Delivery is at-least-once: a handler that raises is retried under the
transport's :class:`~dtpyfw.core.retry.RetryPolicy`; after the last attempt
the message is appended to :attr:`MemoryTransport.dead_letters`, an ERROR is
logged to ``dtpyfw.messaging``, and delivery carries on with the next group
and the next message. Handler failures never make ``publish`` raise.
"""

from __future__ import annotations

__all__ = ["DeadLetter", "MemoryTransport"]

import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dtpyfw.core.retry import RetryPolicy
from dtpyfw.messaging._bus import AsyncConsumer, Consumer
from dtpyfw.messaging._message import Message

logger = logging.getLogger("dtpyfw.messaging")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that ``group`` failed to handle on every attempt."""

    message: Message
    group: str
    #: The last attempt's exception, as ``"TypeName: message"``.
    error: str


class MemoryTransport:
    """Delivers messages in process, immediately, at least once.

    ``published`` keeps the last ``max_published`` messages accepted (events
    and commands), oldest first; ``dead_letters`` keeps every dead letter.
    """

    def __init__(self, *, retry: RetryPolicy | None = None, max_published: int = 1000) -> None:
        self.retry = retry if retry is not None else RetryPolicy()
        self.published: deque[Message] = deque(maxlen=max_published)
        self.dead_letters: list[DeadLetter] = []
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

    def _accept(self, message: Message) -> bytes:
        raw = message.to_json()  # data that a real transport could not carry fails here too
        self.published.append(message)
        return raw

    def _deliver(self, raw: bytes, group: str, consumer: Consumer) -> None:
        message = Message.from_json(raw)
        attempt = _Attempts(self.retry, message, group)
        try:
            self.retry.call(attempt.run, consumer.handle, message, group)
        except Exception as exc:
            self._dead_letter(message, group, exc, attempt.count)

    async def _adeliver(self, raw: bytes, group: str, consumer: AsyncConsumer) -> None:
        message = Message.from_json(raw)
        attempt = _Attempts(self.retry, message, group)
        try:
            await self.retry.acall(attempt.arun, consumer.handle, message, group)
        except Exception as exc:
            self._dead_letter(message, group, exc, attempt.count)

    def _dead_letter(self, message: Message, group: str, exc: Exception, attempts: int) -> None:
        with self._lock:
            self.dead_letters.append(DeadLetter(message, group, f"{type(exc).__name__}: {exc}"))
        logger.error(
            "message %s of type %r dead-lettered by group %r after %d attempt(s)",
            message.id,
            message.type,
            group,
            attempts,
            exc_info=exc,
            extra={
                "message_id": message.id,
                "message_type": message.type,
                "group": group,
                "attempts": attempts,
            },
        )


class _Attempts:
    """Counts the attempts at one delivery and logs each failure that will be retried."""

    def __init__(self, retry: RetryPolicy, message: Message, group: str) -> None:
        self.retry = retry
        self.message = message
        self.group = group
        self.count = 0

    def run(self, handle: Callable[[Message, str], None], message: Message, group: str) -> None:
        self.count += 1
        try:
            handle(message, group)
        except Exception as exc:
            self._failed(exc)
            raise

    async def arun(
        self, handle: Callable[[Message, str], Awaitable[None]], message: Message, group: str
    ) -> None:
        self.count += 1
        try:
            await handle(message, group)
        except Exception as exc:
            self._failed(exc)
            raise

    def _failed(self, exc: Exception) -> None:
        if self.count >= self.retry.attempts or not isinstance(exc, self.retry.retry_on):
            return  # the caller dead-letters it
        logger.warning(
            "handler for message %s of type %r in group %r failed (attempt %d of %d): %s",
            self.message.id,
            self.message.type,
            self.group,
            self.count,
            self.retry.attempts,
            exc,
            extra={
                "message_id": self.message.id,
                "message_type": self.message.type,
                "group": self.group,
                "attempt": self.count,
            },
        )
