"""Records written in CloudEvents binary mode by other producers decode into messages."""

from __future__ import annotations

import pytest

from dtpyfw.messaging import InvalidMessage
from dtpyfw.messaging._kafka import _KafkaDelivery


def test_binary_mode_record_becomes_a_message() -> None:
    """ce_ headers give the attributes, content-type the data format, the value the data."""
    delivery = _KafkaDelivery(
        "orders",
        "g",
        b'{"order_id": 7}',
        (("orders", 0), 12),
        [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"abc"),
            ("ce_source", b"/legacy"),
            ("ce_type", b"order.paid"),
            ("ce_correlationid", b"corr-1"),
            ("content-type", b"application/json"),
        ],
    )
    message = delivery.decode()
    assert (message.id, message.source, message.type) == ("abc", "/legacy", "order.paid")
    assert message.correlation_id == "corr-1"
    assert message.data == {"order_id": 7}
    assert delivery.position == "orders[0]@12"


def test_a_record_that_is_no_cloudevent_is_invalid() -> None:
    """Neither a structured envelope nor ce_ headers: InvalidMessage (dead-lettered)."""
    delivery = _KafkaDelivery("orders", "g", b"plain text", (("orders", 0), 1), [])
    with pytest.raises(InvalidMessage):
        delivery.decode()
