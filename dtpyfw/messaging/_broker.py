"""What broker transports share: channel names, deliveries, inboxes, dead-letter records.

A **channel** is the stream (Redis) or topic (Kafka) a message travels on:

- events of type ``T`` go to ``<channel_prefix>T``; every consumer group
  subscribed to ``T`` reads it with its own broker consumer group, so each
  group gets a copy and, inside a group, one consumer handles each message;
- commands of type ``T`` go to ``<channel_prefix>T<command_suffix>`` and are
  read only by the *first* group subscribed to ``T`` in each process (as
  with the memory transport): give a command type one handling group;
- dead letters of a channel go to ``<channel><dead_letter_suffix>``;
- consumer group ``g`` is ``<group_prefix>g`` on the broker (Redis group,
  Kafka ``group.id``), so services sharing a broker can all have a
  ``default`` group.

An :class:`Inbox` is one consumer group's reader of its channels. The runner
(:mod:`dtpyfw.messaging._runner`) calls ``fetch``/``flush``/``pause``/
``resume``/``close`` from the inbox's own thread, and ``ack``/``dead_letter``
from handler threads, so those two must be thread-safe.
"""

from __future__ import annotations

__all__ = [
    "ChannelNames",
    "Delivery",
    "Inbox",
    "Subscription",
    "dead_letter_record",
    "read_dead_letter_record",
]

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from dtpyfw.messaging._message import Message
from dtpyfw.messaging._serializer import decode_message


class Subscription(NamedTuple):
    """A consumer group's interest in one message type, as events or as commands."""

    type: str
    group: str
    command: bool


@dataclass(frozen=True, slots=True)
class ChannelNames:
    """Names of the streams or topics that messages and dead letters travel on."""

    prefix: str = ""
    command_suffix: str = ".commands"
    dead_letter_suffix: str = ".dlq"
    group_prefix: str = ""

    def group(self, name: str) -> str:
        """The broker's name of consumer group ``name``."""
        return f"{self.group_prefix}{name}"

    def event(self, type: str) -> str:
        """The channel of events of ``type``."""
        return f"{self.prefix}{type}"

    def command(self, type: str) -> str:
        """The channel of commands of ``type``."""
        return f"{self.prefix}{type}{self.command_suffix}"

    def of(self, subscription: Subscription) -> str:
        """The channel a subscription reads."""
        if subscription.command:
            return self.command(subscription.type)
        return self.event(subscription.type)

    def dead_letter(self, channel: str) -> str:
        """Where dead letters of ``channel`` go."""
        return f"{channel}{self.dead_letter_suffix}"


@dataclass(slots=True)
class Delivery:
    """One message as a broker handed it to a consumer group, not yet acknowledged."""

    channel: str
    group: str
    raw: bytes
    #: The transport's handle for acknowledging it (a stream entry id, a partition offset).
    token: Any
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)

    @property
    def position(self) -> str:
        """Where it came from, for logs and dead letters ("stream 1-0", "topic[2]@17")."""
        token = self.token.decode() if isinstance(self.token, bytes) else self.token
        return f"{self.channel} {token}"

    def decode(self) -> Message:
        """The message; a malformed one raises InvalidMessage."""
        return decode_message(self.raw)


class Inbox(Protocol):
    """One consumer group reading its channels on one broker."""

    group: str
    channels: tuple[str, ...]

    def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        """Up to ``limit`` deliveries, waiting at most ``timeout`` seconds for the first."""
        ...

    def ack(self, delivery: Delivery) -> None:
        """Mark handled; may be buffered until :meth:`flush`. Thread-safe."""
        ...

    def dead_letter(
        self, delivery: Delivery, error: str, attempts: int, message: Message | None = None
    ) -> None:
        """Write the delivery to its dead-letter channel, then ack it. Thread-safe."""
        ...

    def flush(self) -> None:
        """Send buffered acknowledgements (XACK, offset commit)."""
        ...

    def pause(self) -> None:
        """Stop receiving while the runner is full (Kafka: pause the partitions)."""
        ...

    def resume(self) -> None:
        """Receive again."""
        ...

    def close(self) -> None:
        """Flush and release the connection; the group's messages go to other members."""
        ...


def dead_letter_record(
    delivery: Delivery, error: str, attempts: int, message: Message | None
) -> bytes:
    """The JSON dead-letter record: the error and where the message came from, then it.

    The original bytes are kept as ``message`` (the envelope, when it was JSON)
    or ``raw_base64`` (anything else), so the record can be re-driven as is.
    """
    record: dict[str, Any] = {
        "error": error,
        "group": delivery.group,
        "channel": delivery.channel,
        "position": delivery.position,
        "attempts": attempts,
        "message_id": message.id if message is not None else None,
        "type": message.type if message is not None else None,
    }
    try:
        record["message"] = json.loads(delivery.raw)
    except ValueError:  # binary, or not even a message
        record["raw_base64"] = base64.b64encode(delivery.raw).decode("ascii")
    return json.dumps(record, separators=(",", ":"), default=str).encode()


def read_dead_letter_record(record: bytes) -> tuple[dict[str, Any], bytes]:
    """``(fields, original bytes)`` of a record made by :func:`dead_letter_record`."""
    fields: dict[str, Any] = json.loads(record)
    if "raw_base64" in fields:
        raw = base64.b64decode(fields.pop("raw_base64"))
    else:
        raw = json.dumps(fields.pop("message"), separators=(",", ":")).encode()
    return fields, raw
