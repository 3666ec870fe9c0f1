"""Events and commands in one CloudEvents envelope, over a pluggable transport.

Resolve ``bus`` (or ``async_bus``) from :class:`MessagingContainer`, register
handlers with ``@bus.handler("user.created", group="mailer")``, then
``bus.publish(...)`` events (every group gets a copy) or ``bus.send(...)``
commands (exactly one handler). :class:`MemoryTransport` is the embedded
transport and the test double.
"""

from dtpyfw.messaging._bus import (
    DEFAULT_GROUP,
    AsyncConsumer,
    AsyncMessageBus,
    Consumer,
    Handler,
    MessageBus,
    Transport,
)
from dtpyfw.messaging._container import MessagingContainer
from dtpyfw.messaging._memory import DeadLetter, MemoryTransport
from dtpyfw.messaging._message import Message, TypeRegistry
from dtpyfw.messaging._settings import MessagingSettings

__all__ = [
    "AsyncConsumer",
    "AsyncMessageBus",
    "Consumer",
    "DEFAULT_GROUP",
    "DeadLetter",
    "Handler",
    "MemoryTransport",
    "Message",
    "MessageBus",
    "MessagingContainer",
    "MessagingSettings",
    "Transport",
    "TypeRegistry",
]
