"""The message envelope every transport carries, and the registry that types its data.

:class:`Message` holds the CloudEvents 1.0 attributes (``specversion``,
``id``, ``source``, ``type``, ``time``, ``subject``, ``datacontenttype``),
our ``traceparent`` and ``correlation_id``, and ``data``: a pydantic model,
a JSON-compatible value, or ``bytes``. On the wire it is CloudEvents JSON or
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
from typing import Any, Literal, TypeVar

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


class Message(BaseModel):
    """One event or command: CloudEvents 1.0 attributes plus tracing context and data.

    ``id`` is unique per message: handlers use it to stay idempotent under
    at-least-once delivery.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=_new_id, min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: AwareDatetime = Field(default_factory=_now)
    subject: str | None = None
    datacontenttype: str = "application/json"
    traceparent: str | None = None
    correlation_id: str | None = None
    data: Any = None

    @classmethod
    def new(
        cls, type: str, data: Any = None, *, source: str, subject: str | None = None
    ) -> Message:
        """A message stamped with the current context's ``traceparent`` and correlation id.

        The correlation id is the bound ``correlation_id``, else the ``request_id``.
        """
        context = current_context()
        return cls(
            type=type,
            source=source,
            subject=subject,
            data=data,
            traceparent=context.traceparent(),
            correlation_id=context.correlation_id or context.request_id,
        )

    def to_json(self) -> bytes:
        """The message as one UTF-8 JSON object; data that is not JSON raises MessagingError."""
        try:
            return self.model_dump_json().encode()
        except PydanticSerializationError as exc:
            raise MessagingError(
                f"data of message {self.type!r} cannot be serialised to JSON: {exc}"
            ) from exc

    @classmethod
    def from_json(cls, raw: bytes | str) -> Message:
        """Parse a message from JSON; a malformed envelope raises InvalidMessage."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidMessage(f"not a valid message envelope: {exc}") from exc


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
