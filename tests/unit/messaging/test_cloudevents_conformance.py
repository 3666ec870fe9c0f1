"""CloudEvents 1.0 conformance of what we write and what we accept (no broker).

What we write is checked by a validator written from the specification
(``tests/cloudevents_spec.py``) and by the CNCF SDK's own parser; what we
accept follows the specification's rules for required and optional
attributes, never inventing a value.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cloudevents.conversion import from_json as sdk_from_json
from cloudevents.http import CloudEvent
from cloudevents.kafka import KafkaMessage, from_binary, to_binary

from dtpyfw.messaging import (
    BinarySerializer,
    InvalidMessage,
    JsonSerializer,
    Message,
    decode_message,
)
from dtpyfw.messaging._kafka import decode_record, encode_record
from tests.cloudevents_spec import json_event_problems, kafka_problems

SOURCE = "/orders-service"


def _messages() -> list[Message]:
    full = Message(
        type="order.paid",
        source=SOURCE,
        subject="order/7",
        data={"order_id": 7},
        dataschema="https://schemas.example.com/order-paid/1",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        correlation_id="corr-7",
    )
    return [
        full,
        Message.new("image.stored", b"\x89PNG\r\n", source=SOURCE),
        Message.new("image.stored", b"<svg/>", source=SOURCE, content_type="image/svg+xml"),
        Message.new("ping", None, source=SOURCE),
        Message.new("count", 3, source=SOURCE),
    ]


@pytest.mark.parametrize("message", _messages(), ids=lambda m: m.type)
def test_structured_json_conforms_and_the_sdk_reads_it(message: Message) -> None:
    """JSON event format: valid per the spec, parsed by the SDK, read back equal."""
    raw = JsonSerializer().dumps(message)
    assert json_event_problems(raw) == []
    event = sdk_from_json(CloudEvent, raw)
    assert (event["id"], event["type"], event["source"]) == (message.id, message.type, SOURCE)
    if message.correlation_id is not None:
        assert event["correlationid"] == message.correlation_id
    assert decode_message(raw) == message


@pytest.mark.parametrize("message", _messages(), ids=lambda m: m.type)
def test_kafka_records_conform_in_both_content_modes(message: Message) -> None:
    """structured (json) and binary mode (binary) records follow the Kafka binding."""
    for serializer in (JsonSerializer(), BinarySerializer()):
        value, headers = encode_record(message, serializer, headers=True)
        assert headers is not None
        assert kafka_problems(value, headers) == [], serializer.name
        assert decode_record(value, headers) == message, serializer.name


def test_binary_mode_is_the_sdks_binary_mode() -> None:
    """The SDK reads our binary-mode record as the same event, data untouched."""
    message = Message.new("image.stored", b"\x00\x01raw", source=SOURCE, subject="img/1")
    value, headers = encode_record(message, BinarySerializer(), headers=True)
    assert headers is not None
    assert value == b"\x00\x01raw"  # the data itself, not a frame around it
    event = from_binary(
        KafkaMessage(headers=dict(headers), key=None, value=value),
        data_unmarshaller=lambda raw: raw,
    )
    assert (event["id"], event["subject"], event["datacontenttype"]) == (
        message.id,
        "img/1",
        "application/octet-stream",
    )
    assert event.data == b"\x00\x01raw"


def test_binary_mode_data_that_looks_like_an_envelope_is_data() -> None:
    """content-type decides the mode: JSON data with id/type/source keys stays data."""
    sneaky = {"specversion": "1.0", "id": "x", "source": "/evil", "type": "admin.delete"}
    event = CloudEvent(
        {"type": "order.paid", "source": "/legacy", "datacontenttype": "application/json"},
        sneaky,
    )
    record = to_binary(event)
    message = decode_record(record.value, list(record.headers.items()))
    assert (message.type, message.source) == ("order.paid", "/legacy")
    assert message.data == sneaky


@pytest.mark.parametrize("missing", ["id", "source", "type", "specversion"])
def test_an_event_without_a_required_attribute_is_refused(missing: str) -> None:
    """No invented id, and no assumed specversion: InvalidMessage naming the attribute."""
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": "e-1",
        "source": SOURCE,
        "type": "order.paid",
        "data": {},
    }
    del envelope[missing]
    with pytest.raises(InvalidMessage, match=missing):
        decode_message(json.dumps(envelope).encode())
    headers = [(f"ce_{k}", str(v).encode()) for k, v in envelope.items() if k != "data"]
    if missing == "specversion":
        with pytest.raises(InvalidMessage):
            decode_record(b"{}", [*headers, ("content-type", b"application/json")])
    else:
        with pytest.raises(InvalidMessage, match=missing):
            decode_record(b"{}", [*headers, ("content-type", b"application/json")])


def test_null_time_and_content_type_are_accepted_and_stay_absent() -> None:
    """time and datacontenttype are optional: null or missing is kept, not filled in."""
    base = {"specversion": "1.0", "id": "e-2", "source": SOURCE, "type": "t"}
    for envelope in (base, {**base, "time": None, "datacontenttype": None}):
        message = decode_message(json.dumps(envelope).encode())
        assert message.time is None
        assert message.datacontenttype is None
        assert message.id == "e-2"


def test_data_and_data_base64_together_are_refused() -> None:
    """The JSON format allows one of them, never both."""
    envelope = {
        "specversion": "1.0",
        "id": "e-3",
        "source": SOURCE,
        "type": "t",
        "data": {"a": 1},
        "data_base64": "AAE=",
    }
    with pytest.raises(InvalidMessage, match="data_base64"):
        decode_message(json.dumps(envelope).encode())


def test_data_base64_inside_data_is_just_data() -> None:
    """Only a top-level data_base64 member means base64 data."""
    envelope = {
        "specversion": "1.0",
        "id": "e-4",
        "source": SOURCE,
        "type": "t",
        "data": {"data_base64": "not base64 at all"},
    }
    assert decode_message(json.dumps(envelope).encode()).data == {
        "data_base64": "not base64 at all"
    }


def test_correlationid_is_the_wire_name_and_the_old_name_still_reads() -> None:
    """Extension names are [a-z0-9]: correlationid on the wire, correlation_id in Python."""
    message = Message.new("t", {}, source=SOURCE)
    message = message.model_copy(update={"correlation_id": "c-1"})
    raw = JsonSerializer().dumps(message)
    assert b'"correlationid":"c-1"' in raw
    assert b"correlation_id" not in raw
    old = json.loads(raw)
    old["correlation_id"] = old.pop("correlationid")
    assert decode_message(json.dumps(old).encode()).correlation_id == "c-1"
    _value, headers = encode_record(message, JsonSerializer(), headers=True)
    assert ("ce_correlationid", b"c-1") in (headers or [])


def test_bytes_data_says_what_it_is() -> None:
    """bytes default to application/octet-stream; content_type and dataschema are kept."""
    assert Message.new("t", b"x", source=SOURCE).datacontenttype == "application/octet-stream"
    assert Message.new("t", {"a": 1}, source=SOURCE).datacontenttype == "application/json"
    typed = Message.new(
        "t", b"x", source=SOURCE, content_type="image/png", dataschema="urn:schema:png"
    )
    for serializer in (JsonSerializer(), BinarySerializer()):
        back = decode_message(serializer.dumps(typed))
        assert (back.datacontenttype, back.dataschema) == ("image/png", "urn:schema:png")
