"""Handlers declared in a module, before any bus exists.

A service keeps its handlers in modules that the container wires, so they can
use ``@inject``; the module cannot reach the bus at import time, so it
collects them in a :class:`Handlers` and the bus (or ``dtpyfw consume``)
subscribes them later::

    # my_service/handlers.py
    handlers = Handlers()

    @handlers.handler("order.paid", group="mailer")
    @inject
    def send_receipt(message: Message, mailer: Mailer = Provide[Container.mailer]) -> None:
        mailer.send(...)

    # at start-up
    container.wire(modules=[my_service.handlers])
    container.messaging.bus().include(my_service.handlers.handlers)

Handlers may also be named by import path: ``handlers.add("order.paid",
"my_service.mail:send_receipt", group="mailer")``.
"""

from __future__ import annotations

__all__ = ["Handlers"]

import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from dtpyfw.messaging._bus import DEFAULT_GROUP, Handler

_HandlerT = TypeVar("_HandlerT", bound=Callable[..., Any])


class Handlers:
    """An ordered collection of ``(type, handler, group)``; iterate it or ``bus.include`` it."""

    def __init__(self) -> None:
        self._entries: list[tuple[str, Handler | str, str]] = []

    def __repr__(self) -> str:
        return f"Handlers(<{len(self._entries)} handlers>)"

    def __iter__(self) -> Iterator[tuple[str, Handler | str, str]]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, type: str, handler: Handler | str, *, group: str = DEFAULT_GROUP) -> None:
        """Declare ``handler`` (a function or ``"module:function"``) for ``type`` in ``group``."""
        if not isinstance(type, str) or not type:
            raise ValueError(f"message type must be a non-empty str, not {type!r}")
        if not isinstance(group, str) or not group:
            raise ValueError(f"consumer group must be a non-empty str, not {group!r}")
        if not isinstance(handler, str) and not callable(handler):
            raise TypeError(f"handler must be callable or 'module:function', not {handler!r}")
        self._entries.append((type, handler, group))

    def handler(self, type: str, *, group: str = DEFAULT_GROUP) -> Callable[[_HandlerT], _HandlerT]:
        """Decorator form of :meth:`add`; returns the function unchanged."""

        def register(handler: _HandlerT) -> _HandlerT:
            self.add(type, handler, group=group)
            return handler

        return register

    def any_async(self) -> bool:
        """True when a handler given as a function is a coroutine function."""
        return any(
            not isinstance(handler, str) and inspect.iscoroutinefunction(handler)
            for _type, handler, _group in self._entries
        )
