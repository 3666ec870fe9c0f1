"""MessageBus and AsyncMessageBus over MemoryTransport: routing, retries, dead letters."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from pydantic import BaseModel

from dtpyfw.core.context import bind_context, current_context
from dtpyfw.core.errors import HandlerNotFound, MessagingError
from dtpyfw.core.retry import RetryPolicy
from dtpyfw.messaging import (
    AsyncMessageBus,
    Consumer,
    DeadLetter,
    MemoryTransport,
    Message,
    MessageBus,
    MessagingContainer,
    MessagingSettings,
    Transport,
    TypeRegistry,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
NO_WAIT = RetryPolicy(attempts=3, initial_delay=0, max_delay=0, jitter=0)


class OrderPaid(BaseModel):
    """Data of an order.paid event."""

    order_id: int


@pytest.fixture
def container() -> MessagingContainer:
    """A messaging container with the memory transport and instant retries."""
    return MessagingContainer(settings=MessagingSettings(source="/shop", retry=NO_WAIT))


@pytest.fixture
def bus(container: MessagingContainer) -> MessageBus:
    """The container's sync bus."""
    return container.bus()  # type: ignore[no-any-return]


@pytest.fixture
def abus(container: MessagingContainer) -> AsyncMessageBus:
    """The container's async bus."""
    return container.async_bus()  # type: ignore[no-any-return]


@pytest.fixture
def transport(container: MessagingContainer) -> MemoryTransport:
    """The memory transport both buses share."""
    return container.transport()  # type: ignore[no-any-return]


def test_container_wiring(container: MessagingContainer) -> None:
    """transport, bus, async_bus and registry are singletons; the buses share the transport."""
    transport = container.transport()
    assert isinstance(transport, MemoryTransport)
    assert isinstance(transport, Transport)
    assert transport.retry == NO_WAIT
    assert container.bus() is container.bus()
    assert container.bus().transport is transport
    assert container.async_bus().transport is transport
    assert container.bus().source == "/shop"
    assert isinstance(container.registry(), TypeRegistry)
    assert container.registry() is container.registry()


def test_health_check_of_memory_is_always_ok(container: MessagingContainer) -> None:
    """The memory transport's health check passes."""
    container.health_check()


async def test_async_health_check(container: MessagingContainer) -> None:
    """ahealth_check returns an awaitable that passes."""
    await container.ahealth_check()


def test_event_fans_out_to_every_group(bus: MessageBus, transport: MemoryTransport) -> None:
    """Each consumer group gets its own copy of an event, decoded from JSON."""
    seen: dict[str, list[Message]] = {"mailer": [], "ledger": []}
    bus.subscribe("order.paid", seen["mailer"].append, group="mailer")

    @bus.handler("order.paid", group="ledger")
    def record(message: Message) -> None:
        seen["ledger"].append(message)

    published = bus.publish("order.paid", OrderPaid(order_id=7), subject="order/7")
    assert [m.id for m in seen["mailer"]] == [published.id]
    assert [m.id for m in seen["ledger"]] == [published.id]
    received = seen["mailer"][0]
    assert received.data == {"order_id": 7}
    assert (received.source, received.subject, received.type) == ("/shop", "order/7", "order.paid")
    assert seen["mailer"][0] is not seen["ledger"][0]
    assert list(transport.published) == [published]


def test_handlers_in_one_group_compete(bus: MessageBus) -> None:
    """Within one group each event goes to one handler, taking turns."""
    calls: list[str] = []
    bus.subscribe("tick", lambda m: calls.append("a"), group="workers")
    bus.subscribe("tick", lambda m: calls.append("b"), group="workers")
    for _ in range(4):
        bus.publish("tick")
    assert sorted(calls) == ["a", "a", "b", "b"]


def test_event_without_subscribers_is_recorded(bus: MessageBus, transport: MemoryTransport) -> None:
    """Publishing with nobody listening is fine and still recorded."""
    message = bus.publish("nobody.cares", {"x": 1})
    assert list(transport.published) == [message]
    assert transport.dead_letters == []


def test_command_goes_to_exactly_one_handler(bus: MessageBus) -> None:
    """send delivers a command to one handler, even with several subscribed."""
    calls: list[str] = []
    bus.subscribe("charge", lambda m: calls.append("first"))
    bus.subscribe("charge", lambda m: calls.append("second"))
    bus.subscribe("charge", lambda m: calls.append("other-group"), group="audit")
    bus.send("charge", {"amount": 5})
    assert len(calls) == 1
    assert calls[0] in {"first", "second"}


def test_command_without_handler_is_handler_not_found(
    bus: MessageBus, transport: MemoryTransport
) -> None:
    """send with no handler for the type raises HandlerNotFound and records nothing."""
    bus.subscribe("other", lambda m: None)
    with pytest.raises(HandlerNotFound, match="'charge'"):
        bus.send("charge", {"amount": 5})
    assert list(transport.published) == []


def test_failing_handler_is_retried_until_it_succeeds(
    bus: MessageBus, transport: MemoryTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that fails twice then succeeds runs three times; nothing is dead-lettered."""
    attempts: list[str] = []

    @bus.handler("flaky")
    def flaky(message: Message) -> None:
        attempts.append(message.id)
        if len(attempts) < 3:
            raise ConnectionError("database blinked")

    with caplog.at_level(logging.WARNING, logger="dtpyfw.messaging"):
        message = bus.publish("flaky")
    assert attempts == [message.id] * 3
    assert transport.dead_letters == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.attempt for r in warnings] == [1, 2]  # type: ignore[attr-defined]


def test_exhausted_retries_dead_letter_and_delivery_continues(
    bus: MessageBus, transport: MemoryTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """After the last attempt the message is dead-lettered, logged, and later ones still flow."""
    handled: list[int] = []
    other_group: list[int] = []

    @bus.handler("job")
    def job(message: Message) -> None:
        if message.data["n"] == 1:
            raise ValueError("bad job 1")
        handled.append(message.data["n"])

    bus.subscribe("job", lambda m: other_group.append(m.data["n"]), group="audit")
    with caplog.at_level(logging.ERROR, logger="dtpyfw.messaging"):
        first = bus.publish("job", {"n": 1})
        bus.publish("job", {"n": 2})
    assert len(transport.dead_letters) == 1
    dead = transport.dead_letters[0]
    assert isinstance(dead, DeadLetter)
    assert (dead.message.id, dead.group, dead.error) == (
        first.id,
        "default",
        "ValueError: bad job 1",
    )
    assert handled == [2]
    assert other_group == [1, 2]
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.message_id == first.id  # type: ignore[attr-defined]
    assert error.attempts == 3  # type: ignore[attr-defined]
    assert error.exc_info is not None


def test_exceptions_outside_retry_on_are_not_retried() -> None:
    """Only exceptions the policy retries are retried; others dead-letter at once."""
    policy = RetryPolicy(attempts=5, initial_delay=0, jitter=0, retry_on=(ConnectionError,))
    transport = MemoryTransport(retry=policy)
    bus = MessageBus(transport)
    calls: list[int] = []

    def broken(message: Message) -> None:
        calls.append(1)
        raise KeyError("missing")

    bus.subscribe("t", broken)
    bus.publish("t")
    assert calls == [1]
    assert transport.dead_letters[0].error == "KeyError: 'missing'"


def test_published_is_bounded() -> None:
    """published keeps only the newest max_published messages."""
    bus = MessageBus(MemoryTransport(max_published=2))
    messages = [bus.publish("t", i) for i in range(3)]
    assert list(bus.transport.published) == messages[1:]  # type: ignore[attr-defined]


def test_sync_bus_rejects_async_handlers_at_subscribe(bus: MessageBus) -> None:
    """An async handler on the sync bus is a TypeError pointing at AsyncMessageBus."""

    async def handler(message: Message) -> None:
        """Never called."""

    with pytest.raises(TypeError, match="AsyncMessageBus"):
        bus.subscribe("t", handler)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AsyncMessageBus"):
        bus.handler("t")(handler)


def test_sync_handler_returning_a_coroutine_is_dead_lettered(
    bus: MessageBus, transport: MemoryTransport
) -> None:
    """A sync-looking handler that returns a coroutine fails clearly, without a warning."""

    async def work(message: Message) -> None:
        """Never awaited."""

    def looks_sync(message: Message) -> None:
        return work(message)  # type: ignore[return-value]

    bus.subscribe("t", looks_sync)
    bus.publish("t")
    assert "returned an awaitable" in transport.dead_letters[0].error


def test_handlers_run_in_the_message_context(bus: MessageBus) -> None:
    """A handler sees the message's correlation id and trace; what it publishes carries them."""
    inside: list[tuple[str | None, str | None]] = []
    follow_ups: list[Message] = []

    @bus.handler("first")
    def first(message: Message) -> None:
        context = current_context()
        inside.append((context.correlation_id, context.trace_id))
        bus.publish("second")

    bus.subscribe("second", follow_ups.append)
    with bind_context(correlation_id="corr-1", trace_id=TRACE_ID, span_id=SPAN_ID):
        bus.publish("first")
    assert inside == [("corr-1", TRACE_ID)]
    assert follow_ups[0].correlation_id == "corr-1"
    assert follow_ups[0].traceparent is not None
    assert TRACE_ID in follow_ups[0].traceparent
    assert current_context().correlation_id is None


def test_invalid_subscriptions(bus: MessageBus) -> None:
    """Empty types or groups and non-callables are rejected at subscribe time."""
    with pytest.raises(ValueError, match="type"):
        bus.subscribe("", lambda m: None)
    with pytest.raises(ValueError, match="group"):
        bus.subscribe("t", lambda m: None, group="")
    with pytest.raises(TypeError, match="callable"):
        bus.subscribe("t", "not a function")  # type: ignore[arg-type]


def test_non_json_data_fails_publish(bus: MessageBus, transport: MemoryTransport) -> None:
    """Data a real transport could not carry makes publish raise MessagingError."""
    with pytest.raises(MessagingError):
        bus.publish("t", object())
    assert list(transport.published) == []


def test_memory_transport_satisfies_the_protocols() -> None:
    """MemoryTransport is a Transport; the buses hand it Consumers."""
    transport = MemoryTransport()
    assert isinstance(transport, Transport)
    seen: list[object] = []

    class Spy(MemoryTransport):
        """Records the consumer it is handed."""

        def publish(self, message: Message, consumer: Consumer) -> None:
            seen.append(consumer)

    MessageBus(Spy()).publish("t")
    assert isinstance(seen[0], Consumer)


# The async bus


async def test_async_bus_awaits_async_handlers(abus: AsyncMessageBus) -> None:
    """Async handlers are awaited, in every group, before publish returns."""
    done: list[str] = []

    @abus.handler("order.paid", group="mailer")
    async def mail(message: Message) -> None:
        await asyncio.sleep(0)
        done.append("mail")

    @abus.handler("order.paid", group="ledger")
    async def ledger(message: Message) -> None:
        done.append("ledger")

    message = await abus.publish("order.paid", OrderPaid(order_id=1))
    assert sorted(done) == ["ledger", "mail"]
    assert message.data == OrderPaid(order_id=1)


async def test_async_bus_runs_sync_handlers_off_the_loop(abus: AsyncMessageBus) -> None:
    """A plain handler on the async bus runs in a worker thread with the message context."""
    threads: list[tuple[int, str | None]] = []

    def handler(message: Message) -> None:
        threads.append((threading.get_ident(), current_context().correlation_id))

    abus.subscribe("t", handler)
    with bind_context(correlation_id="corr-a"):
        await abus.publish("t")
    assert threads[0][0] != threading.get_ident()
    assert threads[0][1] == "corr-a"


async def test_async_send_and_handler_not_found(abus: AsyncMessageBus) -> None:
    """Async commands go to one handler; with none, HandlerNotFound."""
    calls: list[str] = []

    async def first(message: Message) -> None:
        calls.append("first")

    async def second(message: Message) -> None:
        calls.append("second")

    abus.subscribe("cmd", first)
    abus.subscribe("cmd", second)
    await abus.send("cmd")
    assert len(calls) == 1
    with pytest.raises(HandlerNotFound):
        await abus.send("unknown")


async def test_async_retry_then_dead_letter(
    abus: AsyncMessageBus, transport: MemoryTransport
) -> None:
    """Async handlers are retried, dead-lettered after the last try, and delivery goes on."""
    attempts: list[int] = []

    @abus.handler("job")
    async def job(message: Message) -> None:
        attempts.append(message.data)
        if message.data == 1:
            raise RuntimeError("always fails")

    await abus.publish("job", 1)
    await abus.publish("job", 2)
    assert attempts == [1, 1, 1, 2]
    assert [(d.message.data, d.error) for d in transport.dead_letters] == [
        (1, "RuntimeError: always fails")
    ]
