"""Publishing events, sending commands, and dispatching both to handlers.

Vocabulary:

- an **event** (:meth:`MessageBus.publish`) goes to every consumer group
  subscribed to its type; a group with several handlers for the type gives
  each message to one of them (competing consumers, round robin in process);
- a **command** (:meth:`MessageBus.send`) goes to exactly one handler: the
  first group that subscribed to its type takes it. With no handler at all,
  ``send`` raises :class:`~dtpyfw.core.errors.HandlerNotFound`;
- a **handler** is a function taking the :class:`~dtpyfw.messaging.Message`.
  :class:`AsyncMessageBus` awaits async handlers and runs plain ones in a
  worker thread; :class:`MessageBus` takes plain functions only.

While a handler runs, the message's ``correlation_id`` and the trace of its
``traceparent`` are bound in :mod:`dtpyfw.core.context`, so logs and the
messages it publishes carry them on.

The bus builds messages and keeps subscriptions; a :class:`Transport` moves
messages and owns delivery: when handlers run, retries, acknowledgement and
dead letters. Both buses hand the transport a :class:`Consumer` (or
:class:`AsyncConsumer`) to deliver to.
"""

from __future__ import annotations

__all__ = [
    "AsyncConsumer",
    "AsyncMessageBus",
    "Consumer",
    "DEFAULT_GROUP",
    "Handler",
    "MessageBus",
    "Transport",
]

import asyncio
import contextlib
import inspect
import itertools
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from dtpyfw.core.context import bind_context, parse_traceparent
from dtpyfw.core.errors import HandlerNotFound, MessagingError
from dtpyfw.messaging._message import Message

#: The consumer group of handlers subscribed without one.
DEFAULT_GROUP = "default"
DEFAULT_SOURCE = "/dtpyfw"

#: A message handler: a plain function, or (on AsyncMessageBus) an async one.
Handler = Callable[[Message], None] | Callable[[Message], Awaitable[None]]
_HandlerT = TypeVar("_HandlerT", bound=Callable[[Message], Any])


@runtime_checkable
class Consumer(Protocol):
    """The subscriptions of a sync bus, as a transport sees them."""

    def groups(self, type: str) -> Sequence[str]:
        """The consumer groups subscribed to ``type``, in subscription order."""
        ...

    def command_group(self, type: str) -> str:
        """The group that handles commands of ``type``; none raises HandlerNotFound."""
        ...

    def handle(self, message: Message, group: str) -> None:
        """Run one handler of ``group`` on ``message``; its exception propagates."""
        ...


@runtime_checkable
class AsyncConsumer(Protocol):
    """The subscriptions of an async bus, as a transport sees them."""

    def groups(self, type: str) -> Sequence[str]:
        """See :meth:`Consumer.groups`."""
        ...

    def command_group(self, type: str) -> str:
        """See :meth:`Consumer.command_group`."""
        ...

    async def handle(self, message: Message, group: str) -> None:
        """See :meth:`Consumer.handle`."""
        ...


@runtime_checkable
class Transport(Protocol):
    """Carries messages to consumer groups and owns their delivery guarantees.

    ``publish`` and ``send`` must not raise for a handler's failure: retrying
    and dead-lettering are the transport's job. They do raise when the message
    cannot be accepted (a command with no handler, data that is not JSON, a
    broker that is down).
    """

    def publish(self, message: Message, consumer: Consumer) -> None:
        """Deliver the event ``message`` to every group subscribed to its type."""
        ...

    def send(self, message: Message, consumer: Consumer) -> None:
        """Deliver the command ``message`` to exactly one handler."""
        ...

    async def apublish(self, message: Message, consumer: AsyncConsumer) -> None:
        """Async twin of :meth:`publish`."""
        ...

    async def asend(self, message: Message, consumer: AsyncConsumer) -> None:
        """Async twin of :meth:`send`."""
        ...

    def ping(self) -> None:
        """Raise MessagingError when the transport cannot carry messages."""
        ...

    async def aping(self) -> None:
        """Async twin of :meth:`ping`."""
        ...


class MessageBus:
    """Publish events and send commands through ``transport``; handlers are plain functions.

    Messages are stamped with ``source`` and the current request context.
    """

    def __init__(self, transport: Transport, *, source: str = DEFAULT_SOURCE) -> None:
        self.transport = transport
        self.source = source
        self._consumer = _SyncConsumer()

    def publish(self, type: str, data: Any = None, *, subject: str | None = None) -> Message:
        """Publish an event: every consumer group subscribed to ``type`` gets a copy."""
        message = Message.new(type, data, source=self.source, subject=subject)
        self.transport.publish(message, self._consumer)
        return message

    def send(self, type: str, data: Any = None, *, subject: str | None = None) -> Message:
        """Send a command to exactly one handler; with none, raise HandlerNotFound."""
        message = Message.new(type, data, source=self.source, subject=subject)
        self.transport.send(message, self._consumer)
        return message

    def subscribe(
        self, type: str, handler: Callable[[Message], None], *, group: str = DEFAULT_GROUP
    ) -> None:
        """Run ``handler`` for messages of ``type`` delivered to ``group``.

        An async handler is a TypeError here: subscribe it on AsyncMessageBus.
        """
        if _is_async(handler):
            raise TypeError(
                f"handler {_name(handler)} is async; MessageBus runs plain functions only: "
                "subscribe it on AsyncMessageBus (the container's `async_bus`) instead"
            )
        self._consumer.add(type, group, handler)

    def handler(self, type: str, *, group: str = DEFAULT_GROUP) -> Callable[[_HandlerT], _HandlerT]:
        """Decorator form of :meth:`subscribe`; returns the function unchanged."""

        def register(handler: _HandlerT) -> _HandlerT:
            self.subscribe(type, handler, group=group)
            return handler

        return register


class AsyncMessageBus:
    """Async twin of :class:`MessageBus`: ``await bus.publish(...)``.

    Async handlers are awaited; plain ones run in a worker thread.
    """

    def __init__(self, transport: Transport, *, source: str = DEFAULT_SOURCE) -> None:
        self.transport = transport
        self.source = source
        self._consumer = _AsyncConsumer()

    async def publish(self, type: str, data: Any = None, *, subject: str | None = None) -> Message:
        """Publish an event: every consumer group subscribed to ``type`` gets a copy."""
        message = Message.new(type, data, source=self.source, subject=subject)
        await self.transport.apublish(message, self._consumer)
        return message

    async def send(self, type: str, data: Any = None, *, subject: str | None = None) -> Message:
        """Send a command to exactly one handler; with none, raise HandlerNotFound."""
        message = Message.new(type, data, source=self.source, subject=subject)
        await self.transport.asend(message, self._consumer)
        return message

    def subscribe(self, type: str, handler: Handler, *, group: str = DEFAULT_GROUP) -> None:
        """Run ``handler`` (async or plain) for messages of ``type`` delivered to ``group``."""
        self._consumer.add(type, group, handler)

    def handler(self, type: str, *, group: str = DEFAULT_GROUP) -> Callable[[_HandlerT], _HandlerT]:
        """Decorator form of :meth:`subscribe`; returns the function unchanged."""

        def register(handler: _HandlerT) -> _HandlerT:
            self.subscribe(type, handler, group=group)
            return handler

        return register


class _Subscriptions:
    """Who handles what: the routing both consumers share."""

    def __init__(self) -> None:
        # type -> group -> handlers, each dict in subscription order.
        self._handlers: dict[str, dict[str, list[Handler]]] = {}
        self._turns: dict[tuple[str, str], Iterator[int]] = {}
        self._lock = threading.Lock()

    def add(self, type: str, group: str, handler: Handler) -> None:
        if not isinstance(type, str) or not type:
            raise ValueError(f"message type must be a non-empty str, not {type!r}")
        if not isinstance(group, str) or not group:
            raise ValueError(f"consumer group must be a non-empty str, not {group!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {handler!r}")
        with self._lock:
            self._handlers.setdefault(type, {}).setdefault(group, []).append(handler)
            self._turns.setdefault((type, group), itertools.count())

    def groups(self, type: str) -> Sequence[str]:
        with self._lock:
            return tuple(self._handlers.get(type, ()))

    def command_group(self, type: str) -> str:
        groups = self.groups(type)
        if not groups:
            raise HandlerNotFound(
                f"no handler for command {type!r}: register one with "
                f"@bus.handler({type!r}) before sending it"
            )
        return groups[0]

    def next_handler(self, type: str, group: str) -> Handler:
        with self._lock:
            handlers = self._handlers.get(type, {}).get(group)
            if not handlers:
                raise HandlerNotFound(f"no handler for {type!r} in consumer group {group!r}")
            return handlers[next(self._turns[type, group]) % len(handlers)]


class _SyncConsumer(_Subscriptions):
    def handle(self, message: Message, group: str) -> None:
        handler = self.next_handler(message.type, group)
        with _message_context(message):
            result = handler(message)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited: close it so Python does not warn
            raise MessagingError(
                f"handler {_name(handler)} returned an awaitable; MessageBus does not await: "
                "subscribe it on AsyncMessageBus instead"
            )


class _AsyncConsumer(_Subscriptions):
    async def handle(self, message: Message, group: str) -> None:
        handler = self.next_handler(message.type, group)
        with _message_context(message):
            if _is_async(handler):
                await handler(message)  # type: ignore[misc]
            else:
                # to_thread copies the context, so the handler sees the bound values too.
                result = await asyncio.to_thread(handler, message)
                if inspect.isawaitable(result):
                    await result


@contextlib.contextmanager
def _message_context(message: Message) -> Iterator[None]:
    """Bind the message's correlation id and trace while its handler runs."""
    parent = parse_traceparent(message.traceparent)
    trace_id, span_id = parent if parent is not None else (None, None)
    with bind_context(correlation_id=message.correlation_id, trace_id=trace_id, span_id=span_id):
        yield


def _is_async(handler: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - looking for an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _name(handler: Callable[..., Any]) -> str:
    return repr(getattr(handler, "__qualname__", handler))
