"""Message envelope defaults, JSON round trip, context stamping and the type registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel, ValidationError

from dtpyfw.core.context import bind_context
from dtpyfw.core.errors import MessagingError
from dtpyfw.messaging import Message, TypeRegistry

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


class UserCreated(BaseModel):
    """Data of a user.created event."""

    user_id: int
    email: str


def test_envelope_defaults() -> None:
    """A new message has CloudEvents 1.0 defaults: fresh hex id, UTC time, JSON content."""
    before = datetime.now(UTC)
    message = Message(type="user.created", source="/svc")
    assert message.specversion == "1.0"
    assert len(message.id) == 32
    int(message.id, 16)
    assert message.time.tzinfo is not None
    assert before - timedelta(seconds=1) <= message.time <= datetime.now(UTC)
    assert message.datacontenttype == "application/json"
    assert (message.subject, message.traceparent, message.correlation_id, message.data) == (
        None,
        None,
        None,
        None,
    )
    assert Message(type="t", source="/s").id != message.id


def test_message_is_frozen() -> None:
    """Messages cannot be changed once built."""
    message = Message(type="t", source="/s")
    with pytest.raises(ValidationError):
        message.type = "other"  # type: ignore[misc]


def test_type_and_source_are_required() -> None:
    """type and source must be non-empty."""
    with pytest.raises(ValidationError):
        Message(type="", source="/s")
    with pytest.raises(ValidationError):
        Message.model_validate({"type": "t"})


def test_naive_time_is_rejected() -> None:
    """time must carry a timezone."""
    with pytest.raises(ValidationError):
        Message(type="t", source="/s", time=datetime(2024, 1, 1))


def test_json_round_trip() -> None:
    """from_json(to_json()) gives an equal message."""
    message = Message(
        type="order.paid",
        source="/billing",
        subject="order/42",
        traceparent=f"00-{TRACE_ID}-{SPAN_ID}-01",
        correlation_id="corr-1",
        data={"amount": 12.5, "items": [1, 2], "note": None},
    )
    raw = message.to_json()
    assert isinstance(raw, bytes)
    assert json.loads(raw)["specversion"] == "1.0"
    assert Message.from_json(raw) == message


def test_model_data_serialises_as_json() -> None:
    """A pydantic model as data goes on the wire as a JSON object."""
    message = Message.new("user.created", UserCreated(user_id=1, email="a@x"), source="/s")
    decoded = Message.from_json(message.to_json())
    assert decoded.data == {"user_id": 1, "email": "a@x"}


def test_non_json_data_is_a_messaging_error() -> None:
    """Data that JSON cannot carry fails to serialise with MessagingError."""
    message = Message(type="t", source="/s", data=object())
    with pytest.raises(MessagingError, match="cannot be serialised"):
        message.to_json()


def test_malformed_envelope_is_a_messaging_error() -> None:
    """from_json of something that is not an envelope raises MessagingError, chained."""
    with pytest.raises(MessagingError) as info:
        Message.from_json(b'{"type": "t"}')
    assert isinstance(info.value.__cause__, ValidationError)


def test_new_stamps_the_current_context() -> None:
    """Message.new copies traceparent and correlation id from the bound context."""
    with bind_context(trace_id=TRACE_ID, span_id=SPAN_ID, correlation_id="corr-9"):
        message = Message.new("t", {"x": 1}, source="/svc", subject="s")
    assert message.traceparent == f"00-{TRACE_ID}-{SPAN_ID}-01"
    assert message.correlation_id == "corr-9"
    assert (message.source, message.subject, message.data) == ("/svc", "s", {"x": 1})


def test_new_falls_back_to_the_request_id() -> None:
    """Without a correlation id, the request id correlates the message."""
    with bind_context(request_id="req-1"):
        message = Message.new("t", None, source="/svc")
    assert message.correlation_id == "req-1"
    assert message.traceparent is None


def test_new_without_context() -> None:
    """Outside any context the tracing fields stay empty."""
    message = Message.new("t", None, source="/svc")
    assert (message.traceparent, message.correlation_id) == (None, None)


def test_registry_decodes_valid_data() -> None:
    """decode validates received data into the registered model."""
    registry = TypeRegistry()
    assert registry.register("user.created", UserCreated) is UserCreated
    assert "user.created" in registry
    message = Message(type="user.created", source="/s", data={"user_id": "7", "email": "e"})
    assert registry.decode(message) == UserCreated(user_id=7, email="e")


def test_registry_accepts_model_instances() -> None:
    """A message built locally with a model instance decodes to that model."""
    registry = TypeRegistry()
    registry.register("user.created", UserCreated)
    data = UserCreated(user_id=1, email="e")
    assert registry.decode(Message.new("user.created", data, source="/s")) == data


def test_registry_validation_failure_is_a_messaging_error() -> None:
    """Invalid data raises MessagingError chained to pydantic's ValidationError."""
    registry = TypeRegistry()
    registry.register("user.created", UserCreated)
    message = Message(type="user.created", source="/s", data={"user_id": "not a number"})
    with pytest.raises(MessagingError, match="does not match UserCreated") as info:
        registry.decode(message)
    assert isinstance(info.value.__cause__, ValidationError)


def test_registry_unknown_type() -> None:
    """Decoding a type nobody registered names the known types."""
    registry = TypeRegistry()
    registry.register("a", UserCreated)
    with pytest.raises(MessagingError, match=r"'b' \(known: a\)"):
        registry.decode(Message(type="b", source="/s"))


def test_registry_refuses_a_second_model_for_a_type() -> None:
    """One type maps to one model; registering the same one again is harmless."""

    class Other(BaseModel):
        """Another model."""

    registry = TypeRegistry()
    registry.register("a", UserCreated)
    registry.register("a", UserCreated)
    with pytest.raises(MessagingError, match="already registered"):
        registry.register("a", Other)
