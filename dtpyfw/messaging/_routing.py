"""One bus over several transports: message types routed by pattern (``messaging.channels``).

``channels: {"audit.*": kafka}`` with ``transport: redis`` sends ``audit.*``
messages through Kafka and everything else through Redis streams. Patterns
are ``fnmatch`` globs over the message type; the first that matches wins.
"""

from __future__ import annotations

__all__ = ["RoutingTransport"]

import fnmatch
import threading
from collections.abc import Sequence
from typing import Any

from dtpyfw.messaging._broker import Inbox, Subscription
from dtpyfw.messaging._bus import AsyncConsumer, Consumer, Transport
from dtpyfw.messaging._message import Message


class RoutingTransport:
    """Delegates each message to the transport its type routes to; see the module docstring."""

    def __init__(self, default: Transport, routes: Sequence[tuple[str, Transport]]) -> None:
        self.default = default
        self.routes = list(routes)
        self._cache: dict[str, Transport] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        routes = ", ".join(f"{pattern!r}: {t!r}" for pattern, t in self.routes)
        return f"RoutingTransport(default={self.default!r}, routes={{{routes}}})"

    def transport_for(self, type: str) -> Transport:
        """The transport that carries messages of ``type``."""
        found = self._cache.get(type)
        if found is None:
            found = next(
                (t for pattern, t in self.routes if fnmatch.fnmatchcase(type, pattern)),
                self.default,
            )
            with self._lock:
                self._cache[type] = found
        return found

    def publish(self, message: Message, consumer: Consumer) -> None:
        """Publish through the message type's transport."""
        self.transport_for(message.type).publish(message, consumer)

    def send(self, message: Message, consumer: Consumer) -> None:
        """Send through the message type's transport."""
        self.transport_for(message.type).send(message, consumer)

    async def apublish(self, message: Message, consumer: AsyncConsumer) -> None:
        """Async twin of :meth:`publish`."""
        await self.transport_for(message.type).apublish(message, consumer)

    async def asend(self, message: Message, consumer: AsyncConsumer) -> None:
        """Async twin of :meth:`send`."""
        await self.transport_for(message.type).asend(message, consumer)

    def inboxes(self, subscriptions: Sequence[Subscription]) -> list[Inbox]:
        """Each transport's inboxes for the subscriptions routed to it."""
        by_transport: dict[int, tuple[Transport, list[Subscription]]] = {}
        for subscription in subscriptions:
            transport = self.transport_for(subscription.type)
            by_transport.setdefault(id(transport), (transport, []))[1].append(subscription)
        found: list[Inbox] = []
        for transport, routed in by_transport.values():
            found.extend(transport.inboxes(routed))
        return found

    def read_dead_letters(self, type: str, **options: Any) -> Any:
        """The dead letters of ``type``, from its transport."""
        return self.transport_for(type).read_dead_letters(type, **options)  # type: ignore[attr-defined]

    def ping(self) -> None:
        """Ping every transport."""
        for transport in self._all():
            transport.ping()

    async def aping(self) -> None:
        """Async twin of :meth:`ping`."""
        for transport in self._all():
            await transport.aping()

    def close(self) -> None:
        """Close every transport."""
        for transport in self._all():
            transport.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        for transport in self._all():
            await transport.aclose()

    def _all(self) -> list[Transport]:
        unique: dict[int, Transport] = {id(self.default): self.default}
        for _pattern, transport in self.routes:
            unique.setdefault(id(transport), transport)
        return list(unique.values())
