"""The CloudEvents Kafka binding on a real Kafka 4 broker, checked with the CloudEvents SDK.

The ``cloudevents`` package (the CNCF's Python SDK) is the independent
implementation: it writes binary-mode records our consumers must read, and
reads the structured records our bus writes.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from cloudevents.http import CloudEvent
from cloudevents.kafka import KafkaMessage, from_binary, from_structured, to_binary

from dtpyfw.kafka import Consumer, KafkaSettings, Producer
from dtpyfw.messaging import Message, MessagingContainer, MessagingSettings
from dtpyfw.testing import ServiceHandle, create_topic, wait_until


def _container(prefix: str, settings: KafkaSettings, **options: Any) -> MessagingContainer:
    return MessagingContainer(
        settings=MessagingSettings(
            transport="kafka", channel_prefix=prefix, group_prefix=prefix, **options
        ),
        kafka_settings=settings,
    )


def _only_record(settings: KafkaSettings, topic: str) -> Any:
    """The one record of partition 0 of ``topic``, read raw (not through our bus)."""
    with Consumer(settings, None) as consumer:
        consumer.assign([(topic, 0)])
        consumer.seek_to_beginning()
        records: list[Any] = []
        wait_until(lambda: bool(records.extend(consumer.poll(0.2)) or records), timeout=30)
    (record,) = records
    return record


def test_binary_mode_records_of_the_sdk_reach_our_handlers(
    kafka_test_settings: dict[str, Any], kafka_service: ServiceHandle
) -> None:
    """A record the SDK wrote in binary mode (ce_ headers, data as the value) is one Message."""
    prefix = f"ce{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}order.paid"
    create_topic(kafka_service, topic, 1)
    settings = KafkaSettings.model_validate(kafka_test_settings)
    event = CloudEvent(
        {
            "type": "order.paid",
            "source": "/legacy-shop",
            "id": f"sdk-{uuid.uuid4().hex}",
            "subject": "order/7",
            "datacontenttype": "application/json",
            "correlationid": "corr-7",
        },
        {"order_id": 7, "total": "12.50"},
    )
    record = to_binary(event)
    container = _container(prefix, settings)
    bus = container.bus()
    received: list[Message] = []
    done = threading.Event()

    def handle(message: Message) -> None:
        received.append(message)
        done.set()

    bus.subscribe("order.paid", handle, group="billing")
    try:
        with container.runner():
            with Producer(settings) as producer:
                producer.publish(
                    topic,
                    record.value,
                    key=record.key,
                    headers=[(name, value) for name, value in record.headers.items()],
                )
            wait_until(done.is_set, timeout=30, what="the SDK's event to be handled")
    finally:
        container.shutdown_resources()
    (message,) = received
    assert (message.id, message.type, message.source) == (
        event["id"],
        "order.paid",
        "/legacy-shop",
    )
    assert message.subject == "order/7"
    assert message.correlation_id == "corr-7"
    assert message.data == {"order_id": 7, "total": "12.50"}
    assert message.time is not None
    assert message.time.isoformat() == event["time"]


def test_our_records_are_read_by_the_sdk(
    kafka_test_settings: dict[str, Any], kafka_service: ServiceHandle
) -> None:
    """What our bus publishes parses with the SDK, from the value and from the ce_ headers."""
    prefix = f"ce{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}order.shipped"
    create_topic(kafka_service, topic, 1)
    settings = KafkaSettings.model_validate(kafka_test_settings)
    container = _container(prefix, settings)
    try:
        sent = container.bus().publish("order.shipped", {"order_id": 9}, subject="order/9")
    finally:
        container.shutdown_resources()
    record = _only_record(settings, topic)
    headers = dict(record.headers)
    structured = from_structured(KafkaMessage(headers=headers, key=record.key, value=record.value))
    assert structured["id"] == sent.id
    assert structured["type"] == "order.shipped"
    assert structured["source"] == sent.source
    assert structured["subject"] == "order/9"
    assert structured.data == {"order_id": 9}
    # The ce_ headers alone carry the same attributes (for routing without decoding).
    binary = from_binary(KafkaMessage(headers=headers, key=record.key, value=b"{}"))
    for name in ("id", "type", "source", "subject", "specversion"):
        assert binary[name] == structured[name], name


def test_serializer_binary_is_binary_mode_on_a_real_broker(
    kafka_test_settings: dict[str, Any], kafka_service: ServiceHandle
) -> None:
    """serializer: binary writes the binding's binary mode; the SDK and our runner read it."""
    prefix = f"ce{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}image.stored"
    create_topic(kafka_service, topic, 1)
    settings = KafkaSettings.model_validate(kafka_test_settings)
    container = _container(prefix, settings, serializer="binary")
    bus = container.bus()
    received: list[Message] = []
    bus.subscribe("image.stored", received.append, group="thumbs")
    try:
        with container.runner():
            sent = bus.publish(
                "image.stored", b"\x89PNG-bytes", subject="img/1", content_type="image/png"
            )
            wait_until(lambda: bool(received), timeout=30, what="the image event")
    finally:
        container.shutdown_resources()
    assert received == [sent]
    record = _only_record(settings, topic)
    assert record.value == b"\x89PNG-bytes"  # the data itself
    event = from_binary(
        KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value),
        data_unmarshaller=lambda raw: raw,
    )
    assert (event["id"], event["datacontenttype"], event["subject"]) == (
        sent.id,
        "image/png",
        "img/1",
    )
    assert event.data == b"\x89PNG-bytes"
