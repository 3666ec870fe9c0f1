"""The in-memory idempotency store and routing of message types to transports."""

from __future__ import annotations

import time

from dtpyfw.messaging import (
    MemoryIdempotencyStore,
    MemoryTransport,
    MessageBus,
    MessagingSettings,
    RoutingTransport,
)


async def test_memory_store_marks_and_expires() -> None:
    """A marked key is processed until its TTL passes; the oldest keys go first when full."""
    store = MemoryIdempotencyStore(ttl=0.05, max_keys=2)
    assert not store.processed("a")
    store.mark("a")
    assert await store.aprocessed("a")
    deadline = time.monotonic() + 5
    while store.processed("a"):
        assert time.monotonic() < deadline, "the key never expired"
    await store.amark("b")
    store.mark("c")
    store.mark("d")
    assert not store.processed("b")
    assert store.processed("c")
    assert store.processed("d")


def test_routing_sends_each_type_to_its_transport() -> None:
    """The first matching pattern picks the transport; others use the default."""
    default, audit = MemoryTransport(), MemoryTransport()
    routing = RoutingTransport(default, [("audit.*", audit), ("*", default)])
    bus = MessageBus(routing)
    bus.publish("audit.login", {})
    bus.publish("order.paid", {})
    assert [m.type for m in audit.published] == ["audit.login"]
    assert [m.type for m in default.published] == ["order.paid"]
    assert routing.transport_for("audit.x") is audit
    routing.ping()
    routing.close()


def test_settings_list_the_transports_in_use() -> None:
    """transports() names the default, then each routed transport once."""
    settings = MessagingSettings(transport="redis", channels={"a.*": "kafka", "b.*": "redis"})
    assert settings.transports() == ["redis", "kafka"]
