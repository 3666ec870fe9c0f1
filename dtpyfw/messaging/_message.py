"""The message envelope every transport carries, and the registry that types its data.

:class:`Message` holds the CloudEvents 1.0 attributes (``specversion``,
``id``, ``source``, ``type``, ``time``, ``subject``, ``datacontenttype``,
``dataschema``), the ``traceparent`` and ``correlationid`` extensions
(``correlation_id`` in Python), and ``data``: a pydantic model, a
JSON-compatible value, or ``bytes``.

A message *made* here gets a fresh ``id`` and the current ``time``. A
message *received* (:meth:`Message.received`, which every decoder uses) gets
nothing invented: one without ``specversion``, ``id``, ``source`` or
``type`` is :class:`InvalidMessage`; a missing ``time`` or
``datacontenttype`` stays None, as the specification allows. On the wire it is CloudEvents JSON or
a compact binary frame (:mod:`dtpyfw.messaging._serializer`), so a received
message's ``data`` is plain JSON; :meth:`TypeRegistry.decode` turns it back
into the model registered for the message's ``type``, validating it (the
buses do this before a handler runs).
"""

from __future__ import annotations

__all__ = ["InvalidMessage", "Message", "TypeRegistry"]

import secrets
import threading
from datetime import UTC, datetime
from typing import Any, Literal, Self, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticSerializationError

from dtpyfw.core.context import current_context
from dtpyfw.core.errors import MessagingError

_ModelT = TypeVar("_ModelT", bound=BaseModel)


def _new_id() -> str:
    return secrets.token_hex(16)  # 128 random bits, like a uuid4, at a third of the cost


class InvalidMessage(MessagingError):
    """A received message that cannot be handled as it is; retrying cannot help.

    Its envelope is malformed or its data does not match the model registered for
    its type, so consumers dead-letter it at once.
    """


def _now() -> datetime:
    return datetime.now(UTC)


_OCTET_STREAM = "application/octet-stream"


class Message(BaseModel):
    """One event or command: CloudEvents 1.0 attributes plus tracing context and data.

    ``id`` is unique per message: handlers use it to stay idempotent under
    at-least-once delivery.
    """

    # populate_by_name: Python code says correlation_id, the wire correlationid
    # (extension names are lowercase a-z and 0-9 only).
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=_new_id, min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: AwareDatetime | None = Field(default_factory=_now)
    subject: str | None = Field(default=None, min_length=1)
    datacontenttype: str | None = "application/json"
    dataschema: str | None = Field(default=None, min_length=1)
    traceparent: str | None = None
    correlation_id: str | None = Field(default=None, alias="correlationid")
    data: Any = None

    @classmethod
    def received(cls, envelope: dict[str, Any] | bytes | str) -> Self:
        """A message from an envelope that came off the wire; InvalidMessage if it is no event.

        Unlike the constructor it fills in nothing (see the module docstring).
        """
        try:
            if isinstance(envelope, dict):
                message = cls.model_validate(envelope)
            else:
                message = cls.model_validate_json(envelope)
        except ValidationError as exc:
            raise InvalidMessage(f"not a valid message envelope: {_first_error(exc)}") from exc
        # The defaults serve messages made here; what the sender left out is
        # found in model_fields_set (validation stays in pydantic-core, fast).
        given = message.model_fields_set
        if "id" not in given or "specversion" not in given:
            missing = [name for name in ("specversion", "id") if name not in given]
            raise InvalidMessage(
                f"not a valid message envelope: required CloudEvents attributes missing: "
                f"{', '.join(missing)}"
            )
        if "time" not in given or "datacontenttype" not in given:
            absent = {name: None for name in ("time", "datacontenttype") if name not in given}
            return message.model_copy(update=absent)
        return message

    @classmethod
    def new(
        cls,
        type: str,
        data: Any = None,
        *,
        source: str,
        subject: str | None = None,
        content_type: str | None = None,
        dataschema: str | None = None,
    ) -> Message:
        """A message stamped with the current context's ``traceparent`` and correlation id.

        The correlation id is the bound ``correlation_id``, else the ``request_id``.
        ``content_type`` is the data's media type (``datacontenttype``): by default
        ``application/octet-stream`` for ``bytes`` and ``application/json`` otherwise.
        """
        context = current_context()
        if content_type is None:
            content_type = _OCTET_STREAM if isinstance(data, bytes | bytearray) else None
        return cls(
            type=type,
            source=source,
            subject=subject,
            data=data,
            datacontenttype=content_type or "application/json",
            dataschema=dataschema,
            traceparent=context.traceparent(),
            correlation_id=context.correlation_id or context.request_id,
        )

    def to_json(self) -> bytes:
        """The message as one UTF-8 JSON object; data that is not JSON raises MessagingError."""
        try:
            return self.model_dump_json(by_alias=True).encode()
        except PydanticSerializationError as exc:
            raise MessagingError(
                f"data of message {self.type!r} cannot be serialised to JSON: {exc}"
            ) from exc

    @classmethod
    def from_json(cls, raw: bytes | str) -> Self:
        """Parse a received message from JSON; a malformed envelope raises InvalidMessage."""
        return cls.received(raw)


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


class TypeRegistry:
    """Maps message ``type`` names to the pydantic model of their data."""

    def __init__(self) -> None:
        self._models: dict[str, type[BaseModel]] = {}
        self._lock = threading.Lock()

    def register(self, type: str, model: type[_ModelT]) -> type[_ModelT]:
        """Declare that messages of ``type`` carry ``model``; returns ``model``.

        Registering another model for a type already registered is a MessagingError.
        """
        with self._lock:
            current = self._models.get(type)
            if current is not None and current is not model:
                raise MessagingError(
                    f"message type {type!r} is already registered to {current.__qualname__}"
                )
            self._models[type] = model
        return model

    def model_for(self, type: str) -> type[BaseModel]:
        """The model registered for ``type``; an unknown type raises MessagingError."""
        try:
            return self._models[type]
        except KeyError:
            known = ", ".join(sorted(self._models)) or "none"
            raise MessagingError(
                f"no model registered for message type {type!r} (known: {known})"
            ) from None

    def __contains__(self, type: object) -> bool:
        return type in self._models

    def decode(self, message: Message) -> BaseModel:
        """``message.data`` validated into the model registered for its type.

        Invalid data raises :class:`InvalidMessage` (a MessagingError) chained to
        pydantic's ValidationError.
        """
        model = self.model_for(message.type)
        data = message.data
        if isinstance(data, BaseModel) and not isinstance(data, model):
            data = data.model_dump(mode="json")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise InvalidMessage(
                f"message {message.id} of type {message.type!r} does not match "
                f"{model.__qualname__}: {exc}"
            ) from exc
