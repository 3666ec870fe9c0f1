"""Handlers collections, handlers by import path, and @inject handlers wired by the container."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from dtpyfw.container import ServiceContainer
from dtpyfw.messaging import (
    Handlers,
    MemoryIdempotencyStore,
    MemoryTransport,
    Message,
    MessageBus,
)
from dtpyfw.testing import embedded_settings

HANDLER_MODULE = """
from dependency_injector.wiring import Provide, inject

from dtpyfw.container import ServiceContainer
from dtpyfw.messaging import Handlers, IdempotencyStore, Message

handlers = Handlers()
receipts = []


@handlers.handler("order.paid", group="mailer")
@inject
def send_receipt(
    message: Message,
    done: IdempotencyStore = Provide[ServiceContainer.messaging.idempotency],
) -> None:
    key = f"receipt:{message.id}"
    if done.processed(key):
        return
    receipts.append((message.data["order_id"], done))
    done.mark(key)
"""


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A handler module written to a temporary directory and imported under a unique name."""
    name = f"handlers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(HANDLER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield module
    sys.modules.pop(name, None)


def test_wired_handler_module_receives_its_provider(
    handler_module: ModuleType, tmp_path: Path
) -> None:
    """A wired module's @inject handler gets the container's idempotency store and uses it."""
    container = ServiceContainer.from_settings(embedded_settings(tmp_path))
    container.wire(modules=[handler_module])
    try:
        bus = container.messaging.bus()
        bus.include(handler_module.handlers)
        message = Message.new("order.paid", {"order_id": 7}, source="/t")
        transport = container.messaging.transport()
        transport.publish(message, bus.consumer)
        transport.publish(message, bus.consumer)  # delivered twice: at-least-once
        assert [order for order, _ in handler_module.receipts] == [7]
        store = handler_module.receipts[0][1]
        assert isinstance(store, MemoryIdempotencyStore)
        assert store is container.messaging.idempotency()
    finally:
        container.unwire()
        container.shutdown_resources()


def test_handlers_collect_functions_and_import_paths() -> None:
    """Handlers keep (type, handler, group) in order; the bus imports handlers given by path."""
    handlers = Handlers()

    @handlers.handler("a", group="g1")
    def first(message: Message) -> None:
        """A handler."""

    handlers.add("b", "json:dumps", group="g2")
    assert list(handlers) == [("a", first, "g1"), ("b", "json:dumps", "g2")]
    assert len(handlers) == 2
    assert not handlers.any_async()
    bus = MessageBus(MemoryTransport())
    bus.include(handlers)
    assert [(s.type, s.group, s.command) for s in bus.subscriptions()] == [
        ("a", "g1", False),
        ("b", "g2", False),
        ("a", "g1", True),
        ("b", "g2", True),
    ]


def test_handler_paths_that_do_not_import_are_errors() -> None:
    """A bad import path fails at subscribe time, naming the path."""
    bus = MessageBus(MemoryTransport())
    with pytest.raises(ValueError, match="no_such_module"):
        bus.subscribe("t", "no_such_module:handler")
    with pytest.raises(TypeError, match=r"package\.module:function"):
        bus.subscribe("t", "missing-colon")
    with pytest.raises(TypeError, match="callable"):
        Handlers().add("t", 42)  # type: ignore[arg-type]


def test_async_handlers_are_detected() -> None:
    """any_async tells the CLI which bus to run."""
    handlers = Handlers()

    @handlers.handler("t")
    async def handler(message: Message) -> None:
        """An async handler."""

    assert handlers.any_async()
