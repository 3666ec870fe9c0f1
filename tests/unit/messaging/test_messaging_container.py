"""MessagingContainer inside ServiceContainer: transports chosen by settings alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtpyfw.container import ServiceContainer
from dtpyfw.core.errors import NotConfigured
from dtpyfw.messaging import (
    MemoryIdempotencyStore,
    MemoryTransport,
    RedisIdempotencyStore,
    RedisStreamsTransport,
    RoutingTransport,
)
from dtpyfw.messaging._kafka import KafkaTransport
from dtpyfw.testing import embedded_settings


def test_embedded_messaging_validates_without_redis_or_kafka(tmp_path: Path) -> None:
    """The default memory transport composes and validates with no broker section."""
    container = ServiceContainer.from_settings(embedded_settings(tmp_path))
    container.validate()
    assert isinstance(container.messaging.transport(), MemoryTransport)
    assert isinstance(container.messaging.idempotency(), MemoryIdempotencyStore)
    assert container.subsystems["kafka"] is False
    container.shutdown_resources()


@pytest.mark.parametrize(("transport", "section"), [("redis", "redis:"), ("kafka", "kafka:")])
def test_a_transport_without_its_section_says_which_to_add(
    tmp_path: Path, transport: str, section: str
) -> None:
    """Choosing redis or kafka without its settings section names the section to add."""
    settings = embedded_settings(tmp_path, messaging={"transport": transport})
    container = ServiceContainer.from_settings(settings)
    container.validate()
    with pytest.raises(NotConfigured, match=section):
        container.messaging.bus()
    container.shutdown_resources()


def test_transports_follow_the_settings_and_connect_lazily(tmp_path: Path) -> None:
    """redis by default, audit.* on kafka; building them connects to nothing."""
    settings = embedded_settings(
        tmp_path,
        messaging={"transport": "redis", "channels": {"audit.*": "kafka"}},
        redis={"port": 1},
        kafka={"bootstrap_servers": ["127.0.0.1:1"]},
    )
    container = ServiceContainer.from_settings(settings)
    container.validate()
    transport = container.messaging.transport()
    assert isinstance(transport, RoutingTransport)
    assert isinstance(transport.transport_for("order.paid"), RedisStreamsTransport)
    assert isinstance(transport.transport_for("audit.login"), KafkaTransport)
    assert isinstance(container.messaging.idempotency(), RedisIdempotencyStore)
    with container.override(kafka=object()) as _:
        assert container.kafka.producer() is not None
    container.shutdown_resources()
