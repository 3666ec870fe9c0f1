"""Events and commands in one CloudEvents envelope, over memory, Redis streams or Kafka.

Resolve ``bus`` (or ``async_bus``) from :class:`MessagingContainer`, register
handlers with ``@bus.handler("user.created", group="mailer")`` (or collect
them in a :class:`Handlers` and ``bus.include`` it), then ``bus.publish(...)``
events (every group gets a copy) or ``bus.send(...)`` commands (exactly one
handler). ``messaging.transport`` picks the transport: :class:`MemoryTransport`
(embedded, and the test double) delivers in process; Redis streams and Kafka
store messages that a :class:`Runner` / :class:`AsyncRunner` (or
``dtpyfw consume``) delivers, at least once, acknowledging after success and
dead-lettering after the last retry.
"""

from dtpyfw.messaging._broker import ChannelNames, Delivery, Inbox, Subscription
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
from dtpyfw.messaging._delivery import DeadLetter
from dtpyfw.messaging._handlers import Handlers
from dtpyfw.messaging._idempotency import (
    Claim,
    IdempotencyStore,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
)
from dtpyfw.messaging._memory import MemoryTransport
from dtpyfw.messaging._message import InvalidMessage, Message, TypeRegistry
from dtpyfw.messaging._redis import RedisStreamsTransport
from dtpyfw.messaging._routing import RoutingTransport
from dtpyfw.messaging._runner import AsyncRunner, Runner, RunnerOptions
from dtpyfw.messaging._serializer import (
    BinarySerializer,
    JsonSerializer,
    Serializer,
    decode_message,
)
from dtpyfw.messaging._settings import (
    IdempotencySettings,
    KafkaChannelSettings,
    MessagingSettings,
    RedisStreamSettings,
)

__all__ = [
    "AsyncConsumer",
    "AsyncMessageBus",
    "AsyncRunner",
    "BinarySerializer",
    "ChannelNames",
    "Claim",
    "Consumer",
    "DEFAULT_GROUP",
    "DeadLetter",
    "Delivery",
    "Handler",
    "Handlers",
    "IdempotencySettings",
    "IdempotencyStore",
    "Inbox",
    "InvalidMessage",
    "JsonSerializer",
    "KafkaChannelSettings",
    "MemoryIdempotencyStore",
    "MemoryTransport",
    "Message",
    "MessageBus",
    "MessagingContainer",
    "MessagingSettings",
    "RedisIdempotencyStore",
    "RedisStreamSettings",
    "RedisStreamsTransport",
    "RoutingTransport",
    "Runner",
    "RunnerOptions",
    "Serializer",
    "Subscription",
    "Transport",
    "TypeRegistry",
    "decode_message",
]
