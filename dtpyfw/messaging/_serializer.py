"""How a :class:`~dtpyfw.messaging.Message` becomes bytes on a broker, and back.

``messaging.serializer`` picks the format messages are written in; readers
accept both (the first byte tells them apart), so switching format is a
config change even while messages of the old one are still queued.

``json`` (the default)
    The CloudEvents JSON event format: one object holding the attributes and
    ``data``. Absent optional attributes are left out; ``bytes`` data travels
    base64-encoded as ``data_base64``, as the specification says. A received
    object with both ``data`` and ``data_base64`` is invalid.

``binary``
    A compact frame for services that move bytes (images, protobuf, ...)
    and do not want them base64-inflated::

        magic      4 bytes   D7 'C' 'E' 01  (0xD7 never starts a JSON text)
        flags      1 byte    bit 0: data is raw bytes; bit 1: no data
        count      1 byte    number of attributes that follow
        attribute  count x   name length (1 byte), name (ASCII),
                             value length (2 bytes, big-endian), value (UTF-8)
        data       the rest  raw bytes, or the JSON of data

    ``bytes`` data is stored raw (its ``datacontenttype`` defaults to
    ``application/octet-stream``); any other data is stored as JSON. It is
    dtpyfw's own frame, not a CloudEvents format: on Kafka, where records
    have headers, ``binary`` means the Kafka binding's binary mode instead
    (:mod:`dtpyfw.messaging._kafka`).
"""

from __future__ import annotations

__all__ = [
    "BinarySerializer",
    "JsonSerializer",
    "Serializer",
    "decode_message",
    "serializer_for",
]

import base64
import json
import struct
from typing import Any, Literal, Protocol

from pydantic_core import PydanticSerializationError, from_json, to_json

from dtpyfw.core.errors import MessagingError
from dtpyfw.messaging._message import InvalidMessage, Message

_MAGIC = b"\xd7CE\x01"
_RAW_DATA, _NO_DATA = 0x01, 0x02
_OCTET_STREAM = "application/octet-stream"
# (wire name, field): the frame uses the CloudEvents names.
_ATTRIBUTES = (
    ("specversion", "specversion"),
    ("id", "id"),
    ("source", "source"),
    ("type", "type"),
    ("time", "time"),
    ("subject", "subject"),
    ("datacontenttype", "datacontenttype"),
    ("dataschema", "dataschema"),
    ("traceparent", "traceparent"),
    ("correlationid", "correlation_id"),
)
_U16 = struct.Struct(">H")


class Serializer(Protocol):
    """Turns messages into bytes for a broker; :func:`decode_message` reads any format."""

    name: str
    #: The ``content-type`` of the encoded form (a Kafka header where supported).
    content_type: str

    def dumps(self, message: Message) -> bytes:
        """The message as bytes; data that cannot be encoded raises MessagingError."""
        ...


class JsonSerializer:
    """CloudEvents JSON (structured mode)."""

    name = "json"
    content_type = "application/cloudevents+json"

    def dumps(self, message: Message) -> bytes:
        """One UTF-8 JSON object; ``bytes`` data becomes ``data_base64``."""
        if isinstance(message.data, bytes | bytearray):
            envelope = message.model_dump(
                mode="json", exclude={"data"}, exclude_none=True, by_alias=True
            )
            envelope["data_base64"] = base64.b64encode(message.data).decode("ascii")
            return json.dumps(envelope, separators=(",", ":")).encode()
        try:
            return message.model_dump_json(exclude_none=True, by_alias=True).encode()
        except PydanticSerializationError as exc:
            raise MessagingError(
                f"data of message {message.type!r} cannot be serialised to JSON: {exc}"
            ) from exc


class BinarySerializer:
    """The framed binary form described in the module docstring."""

    name = "binary"
    content_type = "application/vnd.dtpyfw.cloudevent"

    def dumps(self, message: Message) -> bytes:
        """Attributes in a length-prefixed frame, then the data (raw when it is bytes)."""
        data = message.data
        flags = 0
        if data is None:
            body, flags = b"", _NO_DATA
        elif isinstance(data, bytes | bytearray):
            body, flags = bytes(data), _RAW_DATA
        else:
            try:
                body = to_json(data)
            except PydanticSerializationError as exc:
                raise MessagingError(
                    f"data of message {message.type!r} cannot be serialised to JSON: {exc}"
                ) from exc
        attributes = []
        for name, field in _ATTRIBUTES:
            value = getattr(message, field)
            if value is None:
                continue
            text = value.isoformat() if name == "time" else value
            if name == "datacontenttype" and flags == _RAW_DATA and text == "application/json":
                text = _OCTET_STREAM
            encoded = str(text).encode()
            if len(encoded) > 0xFFFF:
                raise MessagingError(f"attribute {name!r} of message {message.id} is too long")
            attributes.append(bytes((len(name),)) + name.encode() + _U16.pack(len(encoded)))
            attributes.append(encoded)
        head = _MAGIC + bytes((flags, len(attributes) // 2))
        return b"".join((head, *attributes, body))


def serializer_for(name: Literal["json", "binary"]) -> Serializer:
    """The serializer called ``name``."""
    if name == "json":
        return JsonSerializer()
    if name == "binary":
        return BinarySerializer()
    raise ValueError(f"unknown serializer {name!r}: use 'json' or 'binary'")


def decode_message(raw: bytes) -> Message:
    """A message from either format; anything else raises :class:`InvalidMessage`."""
    first = raw[:1]
    if first == b"\xd7" and raw.startswith(_MAGIC):
        return _decode_binary(raw)
    if first == b"{" or first in (b" ", b"\n", b"\r", b"\t"):
        if b'"data_base64"' in raw:  # maybe only inside data: decided on the parsed object
            return _decode_json_object(raw)
        return Message.received(raw)
    raise InvalidMessage(f"not a message in a known format (starts with {raw[:8]!r})")


def _decode_json_object(raw: bytes) -> Message:
    try:
        envelope = json.loads(raw)
    except ValueError as exc:
        raise InvalidMessage(f"not a valid message envelope: {exc}") from exc
    if not isinstance(envelope, dict):
        raise InvalidMessage("not a valid message envelope: not a JSON object")
    if "data_base64" in envelope:
        if "data" in envelope:
            raise InvalidMessage("not a valid message envelope: both data and data_base64")
        try:
            envelope["data"] = base64.b64decode(envelope.pop("data_base64"), validate=True)
        except (ValueError, TypeError) as exc:
            raise InvalidMessage(f"not a valid message envelope: data_base64: {exc}") from exc
    return Message.received(envelope)


def _decode_binary(raw: bytes) -> Message:
    try:
        flags, count = raw[4], raw[5]
        position = 6
        envelope: dict[str, Any] = {}
        for _ in range(count):
            name_length = raw[position]
            name = raw[position + 1 : position + 1 + name_length].decode("ascii")
            position += 1 + name_length
            (value_length,) = _U16.unpack_from(raw, position)
            position += 2
            envelope[name] = raw[position : position + value_length].decode()
            position += value_length
        if position > len(raw):
            raise ValueError("the frame is shorter than its attributes say")
        body = raw[position:]
        if flags & _NO_DATA:
            envelope["data"] = None
        elif flags & _RAW_DATA:
            envelope["data"] = body
        else:
            envelope["data"] = from_json(body)
    except (IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidMessage(f"not a valid binary message frame: {exc}") from exc
    # Frames written before specversion was stored in them are ours, and 1.0.
    envelope.setdefault("specversion", "1.0")
    return Message.received(envelope)
