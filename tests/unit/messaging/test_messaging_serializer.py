"""Wire formats: CloudEvents JSON, the binary frame, and reading either."""

from __future__ import annotations

import json

import pytest

from dtpyfw.messaging import (
    BinarySerializer,
    InvalidMessage,
    JsonSerializer,
    Message,
    decode_message,
)
from dtpyfw.messaging._serializer import serializer_for


def message(data: object, **attributes: object) -> Message:
    """A message with every optional attribute set."""
    values: dict[str, object] = {
        "type": "order.paid",
        "source": "/shop",
        "subject": "order/1",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "correlation_id": "corr",
        "data": data,
    }
    values.update(attributes)
    return Message(**values)


@pytest.mark.parametrize("serializer", [JsonSerializer(), BinarySerializer()])
@pytest.mark.parametrize("data", [{"n": 1, "s": "é"}, [1, 2], "text", 3.5, None])
def test_round_trip_keeps_every_attribute(serializer: JsonSerializer, data: object) -> None:
    """Both formats bring back the same message, whichever is read."""
    sent = message(data)
    assert decode_message(serializer.dumps(sent)) == sent


def test_json_is_cloudevents_structured_mode() -> None:
    """JSON leaves absent attributes out and carries bytes as data_base64."""
    raw = JsonSerializer().dumps(Message(type="t", source="/s", data=b"\x00\xff"))
    envelope = json.loads(raw)
    assert envelope["data_base64"] == "AP8="
    assert "data" not in envelope
    assert "subject" not in envelope
    assert decode_message(raw).data == b"\x00\xff"


def test_binary_frame_stores_bytes_raw() -> None:
    """Binary data travels unencoded after the framed attributes, typed octet-stream."""
    blob = bytes(range(256)) * 4
    raw = BinarySerializer().dumps(message(blob))
    assert raw.startswith(b"\xd7CE\x01")
    assert raw.endswith(blob)
    assert len(raw) < len(blob) + 300
    decoded = decode_message(raw)
    assert decoded.data == blob
    assert decoded.datacontenttype == "application/octet-stream"


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "known format"),
        (b"garbage", "known format"),
        (b'{"type": "t"}', "source"),
        (b"\xd7CE\x01\x00\x05\x02id", "frame"),
        (b'{"type":"t","source":"/s","data_base64":"***"}', "envelope"),
    ],
)
def test_malformed_input_is_invalid_message(raw: bytes, match: str) -> None:
    """Anything that is not a message raises InvalidMessage saying why."""
    with pytest.raises(InvalidMessage, match=match):
        decode_message(raw)


def test_data_that_is_not_json_cannot_be_sent() -> None:
    """Both serializers refuse data they cannot encode."""
    for serializer in (JsonSerializer(), BinarySerializer()):
        with pytest.raises(Exception, match="cannot be serialised"):
            serializer.dumps(Message(type="t", source="/s", data=object()))


def test_serializer_by_name() -> None:
    """Settings name the serializers json and binary."""
    assert isinstance(serializer_for("json"), JsonSerializer)
    assert isinstance(serializer_for("binary"), BinarySerializer)
    with pytest.raises(ValueError, match="unknown serializer"):
        serializer_for("xml")  # type: ignore[arg-type]
