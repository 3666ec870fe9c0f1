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

With a :class:`~dtpyfw.messaging.TypeRegistry`, a handler receives
``message.data`` validated into the model registered for the message's type;
data that does not validate is dead-lettered at once, never retried.

The bus builds messages and keeps subscriptions; a :class:`Transport` moves
messages and owns delivery: when handlers run, retries, acknowledgement and
dead letters. Both buses hand the transport a :class:`Consumer` (or
:class:`AsyncConsumer`) to deliver to. The memory transport delivers inside
``publish``; a broker transport (Redis, Kafka) stores the message and a
:class:`~dtpyfw.messaging.Runner` delivers it from the broker's inboxes.
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
import importlib
import inspect
import itertools
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from dtpyfw.core import context as _context
from dtpyfw.core.context import parse_traceparent
from dtpyfw.core.errors import HandlerNotFound, MessagingError
from dtpyfw.messaging._broker import Inbox, Subscription
from dtpyfw.messaging._message import Message, TypeRegistry

if TYPE_CHECKING:
    from dtpyfw.messaging._handlers import Handlers

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

    def inboxes(self, subscriptions: Sequence[Subscription]) -> list[Inbox]:
        """Readers of the broker for ``subscriptions``; empty when delivery is in process."""
        ...

    def close(self) -> None:
        """Release connections (flush what is buffered); closing twice is harmless."""
        ...

    async def aclose(self) -> None:
        """Async twin of :meth:`close`, for what was opened by the async methods."""
        ...


class MessageBus:
    """Publish events and send commands through ``transport``; handlers are plain functions.

    Messages are stamped with ``source`` and the current request context.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        source: str = DEFAULT_SOURCE,
        registry: TypeRegistry | None = None,
    ) -> None:
        self.transport = transport
        self.source = source
        self.registry = registry
        self._consumer = _SyncConsumer(registry)

    @property
    def consumer(self) -> Consumer:
        """The subscriptions as transports and runners see them."""
        return self._consumer

    def subscriptions(self) -> list[Subscription]:
        """What a runner reads: each (type, group) as events; each type's 1st group, commands."""
        return self._consumer.subscriptions()

    def publish(
        self,
        type: str,
        data: Any = None,
        *,
        subject: str | None = None,
        content_type: str | None = None,
        dataschema: str | None = None,
    ) -> Message:
        """Publish an event: every consumer group subscribed to ``type`` gets a copy."""
        message = Message.new(
            type,
            data,
            source=self.source,
            subject=subject,
            content_type=content_type,
            dataschema=dataschema,
        )
        self.transport.publish(message, self._consumer)
        return message

    def send(
        self,
        type: str,
        data: Any = None,
        *,
        subject: str | None = None,
        content_type: str | None = None,
        dataschema: str | None = None,
    ) -> Message:
        """Send a command to exactly one handler; with none, raise HandlerNotFound."""
        message = Message.new(
            type,
            data,
            source=self.source,
            subject=subject,
            content_type=content_type,
            dataschema=dataschema,
        )
        self.transport.send(message, self._consumer)
        return message

    def subscribe(
        self,
        type: str,
        handler: Callable[[Message], None] | str,
        *,
        group: str = DEFAULT_GROUP,
    ) -> None:
        """Run ``handler`` for messages of ``type`` delivered to ``group``.

        ``handler`` is a function or its import path (``"my.module:function"``).
        An async handler is a TypeError here: subscribe it on AsyncMessageBus.
        """
        function: Callable[[Message], None] = _resolve(handler)
        if _is_async(function):
            raise TypeError(
                f"handler {_name(function)} is async; MessageBus runs plain functions only: "
                "subscribe it on AsyncMessageBus (the container's `async_bus`) instead"
            )
        self._consumer.add(type, group, function)

    def handler(self, type: str, *, group: str = DEFAULT_GROUP) -> Callable[[_HandlerT], _HandlerT]:
        """Decorator form of :meth:`subscribe`; returns the function unchanged."""

        def register(handler: _HandlerT) -> _HandlerT:
            self.subscribe(type, handler, group=group)
            return handler

        return register

    def include(self, handlers: Handlers | Iterable[tuple[str, Handler | str, str]]) -> None:
        """Subscribe every ``(type, handler, group)`` of a :class:`~dtpyfw.messaging.Handlers`."""
        for type, handler, group in handlers:
            self.subscribe(type, handler, group=group)  # type: ignore[arg-type]


class AsyncMessageBus:
    """Async twin of :class:`MessageBus`: ``await bus.publish(...)``.

    Async handlers are awaited; plain ones run in a worker thread.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        source: str = DEFAULT_SOURCE,
        registry: TypeRegistry | None = None,
    ) -> None:
        self.transport = transport
        self.source = source
        self.registry = registry
        self._consumer = _AsyncConsumer(registry)

    @property
    def consumer(self) -> AsyncConsumer:
        """The subscriptions as transports and runners see them."""
        return self._consumer

    def subscriptions(self) -> list[Subscription]:
        """See :meth:`MessageBus.subscriptions`."""
        return self._consumer.subscriptions()

    async def publish(
        self,
        type: str,
        data: Any = None,
        *,
        subject: str | None = None,
        content_type: str | None = None,
        dataschema: str | None = None,
    ) -> Message:
        """Publish an event: every consumer group subscribed to ``type`` gets a copy."""
        message = Message.new(
            type,
            data,
            source=self.source,
            subject=subject,
            content_type=content_type,
            dataschema=dataschema,
        )
        await self.transport.apublish(message, self._consumer)
        return message

    async def send(
        self,
        type: str,
        data: Any = None,
        *,
        subject: str | None = None,
        content_type: str | None = None,
        dataschema: str | None = None,
    ) -> Message:
        """Send a command to exactly one handler; with none, raise HandlerNotFound."""
        message = Message.new(
            type,
            data,
            source=self.source,
            subject=subject,
            content_type=content_type,
            dataschema=dataschema,
        )
        await self.transport.asend(message, self._consumer)
        return message

    def subscribe(self, type: str, handler: Handler | str, *, group: str = DEFAULT_GROUP) -> None:
        """Run ``handler`` for messages of ``type`` delivered to ``group``.

        ``handler`` is async or plain, or its import path (``"my.module:function"``).
        """
        self._consumer.add(type, group, _resolve(handler))

    def handler(self, type: str, *, group: str = DEFAULT_GROUP) -> Callable[[_HandlerT], _HandlerT]:
        """Decorator form of :meth:`subscribe`; returns the function unchanged."""

        def register(handler: _HandlerT) -> _HandlerT:
            self.subscribe(type, handler, group=group)
            return handler

        return register

    def include(self, handlers: Handlers | Iterable[tuple[str, Handler | str, str]]) -> None:
        """Subscribe every ``(type, handler, group)`` of a :class:`~dtpyfw.messaging.Handlers`."""
        for type, handler, group in handlers:
            self.subscribe(type, handler, group=group)


class _Subscriptions:
    """Who handles what: the routing both consumers share."""

    def __init__(self, registry: TypeRegistry | None = None) -> None:
        # type -> group -> handlers, each dict in subscription order.
        self._handlers: dict[str, dict[str, list[Handler]]] = {}
        self._turns: dict[tuple[str, str], Iterator[int]] = {}
        self._lock = threading.Lock()
        self.registry = registry

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

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            found = [
                Subscription(type, group, command=False)
                for type, groups in self._handlers.items()
                for group in groups
            ]
            found += [
                Subscription(type, next(iter(groups)), command=True)
                for type, groups in self._handlers.items()
                if groups
            ]
        return found

    def typed(self, message: Message) -> Message:
        """``message`` with its data validated into the registered model, if any."""
        registry = self.registry
        if registry is None or message.type not in registry:
            return message
        return message.model_copy(update={"data": registry.decode(message)})

    def next_handler(self, type: str, group: str) -> Handler:
        # Reading needs no lock: subscriptions only grow, and dict reads are atomic.
        groups = self._handlers.get(type)
        handlers = groups.get(group) if groups is not None else None
        if not handlers:
            raise HandlerNotFound(f"no handler for {type!r} in consumer group {group!r}")
        if len(handlers) == 1:
            return handlers[0]
        with self._lock:
            return handlers[next(self._turns[type, group]) % len(handlers)]


class _SyncConsumer(_Subscriptions):
    def handle(self, message: Message, group: str) -> None:
        handler = self.next_handler(message.type, group)
        message = self.typed(message)
        with _message_context(message):
            result = handler(message)
        if result is not None and inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited: close it so Python does not warn
            raise MessagingError(
                f"handler {_name(handler)} returned an awaitable; MessageBus does not await: "
                "subscribe it on AsyncMessageBus instead"
            )


class _AsyncConsumer(_Subscriptions):
    async def handle(self, message: Message, group: str) -> None:
        handler = self.next_handler(message.type, group)
        message = self.typed(message)
        with _message_context(message):
            if _is_async(handler):
                await handler(message)  # type: ignore[misc]
            else:
                # to_thread copies the context, so the handler sees the bound values too.
                result = await asyncio.to_thread(handler, message)
                if inspect.isawaitable(result):
                    await result


class _message_context:  # noqa: N801 - used like the contextmanager it replaces
    """Bind the message's correlation id and trace while its handler runs.

    Sets the context variables directly: this runs once per message delivered,
    where ``bind_context``'s checks and snapshot would cost more than the rest.
    """

    __slots__ = ("_tokens", "_values")

    def __init__(self, message: Message) -> None:
        parent = parse_traceparent(message.traceparent) if message.traceparent else None
        trace, span = parent if parent is not None else (None, None)
        self._values = (message.correlation_id, trace, span)
        self._tokens: tuple[Any, ...] = ()

    def __enter__(self) -> None:
        correlation, trace, span = self._values
        self._tokens = (
            _context.correlation_id.set(correlation),
            _context.trace_id.set(trace),
            _context.span_id.set(span),
        )

    def __exit__(self, *exc_info: object) -> None:
        correlation, trace, span = self._tokens
        _context.span_id.reset(span)
        _context.trace_id.reset(trace)
        _context.correlation_id.reset(correlation)


def _resolve(handler: Any) -> Any:
    """A handler given by its import path, ``"package.module:function"``, imported."""
    if not isinstance(handler, str):
        return handler
    module_name, _, attribute = handler.partition(":")
    if not module_name or not attribute:
        raise TypeError(
            f"handler must be callable or an import path 'package.module:function', not {handler!r}"
        )
    try:
        found = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"handler {handler!r} cannot be imported: {exc}") from exc
    return found


def _is_async(handler: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - looking for an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _name(handler: Callable[..., Any]) -> str:
    return repr(getattr(handler, "__qualname__", handler))
