"""Runner and AsyncRunner over a fake broker: acks, dead letters, backpressure, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

import pytest

from dtpyfw.core.retry import RetryPolicy
from dtpyfw.messaging import (
    AsyncMessageBus,
    AsyncRunner,
    Delivery,
    Inbox,
    MemoryTransport,
    Message,
    MessageBus,
    Runner,
    Subscription,
)
from dtpyfw.messaging._serializer import JsonSerializer

NO_WAIT = RetryPolicy(attempts=2, initial_delay=0, max_delay=0, jitter=0)


class FakeInbox:
    """An inbox over a list: records acks, dead letters, pauses and closes."""

    def __init__(self, group: str, channels: Sequence[str]) -> None:
        self.group = group
        self.channels = tuple(channels)
        self.queue: list[Delivery] = []
        self.acked: list[str] = []
        self.dead: list[tuple[str, str, int]] = []
        self.pauses = 0
        self.resumes = 0
        self.closed = False
        self.largest_fetch = 0
        self._lock = threading.Lock()
        self._arrived = threading.Event()

    def put(self, raw: bytes, position: str) -> None:
        """Make a message available to fetch."""
        with self._lock:
            self.queue.append(Delivery(self.channels[0], self.group, raw, position))
        self._arrived.set()

    def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        """Up to ``limit`` queued deliveries, waiting up to ``timeout`` for one."""
        if limit > 0 and not self.queue:
            self._arrived.wait(timeout)
        with self._lock:
            batch, self.queue = self.queue[:limit], self.queue[limit:]
            if not self.queue:
                self._arrived.clear()
        self.largest_fetch = max(self.largest_fetch, len(batch))
        return batch

    def ack(self, delivery: Delivery) -> None:
        """Record the acknowledgement."""
        with self._lock:
            self.acked.append(delivery.token)

    def dead_letter(
        self, delivery: Delivery, error: str, attempts: int, message: Message | None = None
    ) -> None:
        """Record the dead letter."""
        with self._lock:
            self.dead.append((delivery.token, error, attempts))

    def flush(self) -> None:
        """Nothing buffered."""

    def pause(self) -> None:
        """Count pauses."""
        self.pauses += 1

    def resume(self) -> None:
        """Count resumes."""
        self.resumes += 1

    def close(self) -> None:
        """Remember the close."""
        self.closed = True


class FakeBroker(MemoryTransport):
    """A memory transport whose runner reads FakeInboxes instead of delivering in process."""

    def __init__(self) -> None:
        super().__init__()
        self.inbox_by_group: dict[str, FakeInbox] = {}

    def inboxes(self, subscriptions: Sequence[Subscription]) -> list[Inbox]:
        """One fake inbox per group."""
        for subscription in subscriptions:
            self.inbox_by_group.setdefault(
                subscription.group, FakeInbox(subscription.group, [subscription.type])
            )
        return list(self.inbox_by_group.values())


def encoded(type: str, data: object) -> bytes:
    """A message as a broker would store it."""
    return JsonSerializer().dumps(Message.new(type, data, source="/t"))


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until ``condition`` holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


def test_acks_after_success_and_dead_letters_after_the_last_try() -> None:
    """Handled messages are acked; a failing one is dead-lettered with its error; junk too."""
    broker = FakeBroker()
    bus = MessageBus(broker)
    handled: list[int] = []

    @bus.handler("job", group="g")
    def job(message: Message) -> None:
        if message.data == 2:
            raise ValueError("no 2s")
        handled.append(message.data)

    runner = Runner(bus, retry=NO_WAIT, poll_timeout=0.05)
    with runner:
        inbox = broker.inbox_by_group["g"]
        for n in (1, 2, 3):
            inbox.put(encoded("job", n), f"p{n}")
        inbox.put(b"not a message", "p4")
        wait_until(lambda: len(inbox.acked) + len(inbox.dead) == 4)
    assert sorted(inbox.acked) == ["p1", "p3"]
    assert sorted(handled) == [1, 3]
    dead = {token: (error, attempts) for token, error, attempts in inbox.dead}
    assert dead["p2"] == ("ValueError: no 2s", 2)
    assert dead["p4"][0].startswith("InvalidMessage:")
    assert (runner.handled, runner.dead_lettered) == (2, 2)
    assert inbox.closed


def test_backpressure_pauses_and_bounds_in_flight() -> None:
    """With max_in_flight unfinished the runner pauses and never fetches more than room."""
    broker = FakeBroker()
    bus = MessageBus(broker)
    release = threading.Event()
    running: list[int] = []

    @bus.handler("slow", group="g")
    def slow(message: Message) -> None:
        running.append(message.data)
        release.wait(5)

    runner = Runner(bus, concurrency=2, max_in_flight=3, batch_size=10, poll_timeout=0.05)
    runner.start()
    inbox = broker.inbox_by_group["g"]
    try:
        for n in range(8):
            inbox.put(encoded("slow", n), f"p{n}")
        wait_until(lambda: inbox.pauses >= 1)
        assert len(running) == 2  # concurrency bounds the handlers running at once
        assert len(inbox.queue) == 5  # max_in_flight bounds what was taken from the broker
        assert inbox.largest_fetch <= 3
        release.set()
        wait_until(lambda: len(inbox.acked) == 8)
        assert inbox.resumes >= 1
    finally:
        release.set()
        runner.stop()


def test_stop_lets_the_handler_in_flight_finish_and_acks_it() -> None:
    """stop() stops fetching, waits for the running handler and acks it before returning."""
    broker = FakeBroker()
    bus = MessageBus(broker)
    started = threading.Event()
    release = threading.Event()

    @bus.handler("work", group="g")
    def work(message: Message) -> None:
        started.set()
        release.wait(5)

    runner = Runner(bus, max_in_flight=1, poll_timeout=0.05, shutdown_timeout=5)
    runner.start()
    inbox = broker.inbox_by_group["g"]
    inbox.put(encoded("work", 1), "p1")
    assert started.wait(5)
    inbox.put(encoded("work", 2), "p2")  # the runner is full: it stays in the broker
    stopper = threading.Thread(target=runner.stop)
    stopper.start()
    wait_until(lambda: not runner.running or stopper.is_alive())
    assert not inbox.acked
    release.set()
    stopper.join(10)
    assert inbox.acked == ["p1"]
    assert [d.token for d in inbox.queue] == ["p2"]
    assert inbox.closed
    assert not runner.running


def test_stop_gives_up_after_the_shutdown_timeout() -> None:
    """A handler running past shutdown_timeout is left unacknowledged."""
    broker = FakeBroker()
    bus = MessageBus(broker)
    started = threading.Event()
    release = threading.Event()

    @bus.handler("stuck", group="g")
    def stuck(message: Message) -> None:
        started.set()
        release.wait(5)

    runner = Runner(bus, poll_timeout=0.05, shutdown_timeout=0.05)
    runner.start()
    inbox = broker.inbox_by_group["g"]
    inbox.put(encoded("stuck", 1), "p1")
    assert started.wait(5)
    runner.stop()
    release.set()
    assert inbox.acked == []
    assert inbox.closed


def test_concurrency_one_handles_in_order_in_the_consumer_thread() -> None:
    """With concurrency=1 handlers run one at a time, in fetch order, in the pump thread."""
    broker = FakeBroker()
    bus = MessageBus(broker)
    seen: list[tuple[int, str]] = []

    @bus.handler("ordered", group="g")
    def ordered(message: Message) -> None:
        seen.append((message.data, threading.current_thread().name))

    with Runner(bus, concurrency=1, batch_size=3, poll_timeout=0.05):
        inbox = broker.inbox_by_group["g"]
        for n in range(10):
            inbox.put(encoded("ordered", n), f"p{n}")
        wait_until(lambda: len(inbox.acked) == 10)
    assert [n for n, _ in seen] == list(range(10))
    assert {name for _, name in seen} == {"dtpyfw-consume-g"}


def test_run_returns_after_request_stop() -> None:
    """run() blocks until request_stop(), then stops cleanly."""
    broker = FakeBroker()
    bus = MessageBus(broker)
    bus.subscribe("t", lambda m: None, group="g")
    runner = Runner(bus, poll_timeout=0.05)
    thread = threading.Thread(target=runner.run, kwargs={"handle_signals": False})
    thread.start()
    wait_until(lambda: runner.running)
    runner.request_stop()
    thread.join(5)
    assert not thread.is_alive()
    assert broker.inbox_by_group["g"].closed


def test_a_runner_starts_once() -> None:
    """Starting a runner twice is an error; stopping twice is harmless."""
    runner = Runner(MessageBus(FakeBroker()), poll_timeout=0.05)
    runner.start()
    with pytest.raises(Exception, match="already started"):
        runner.start()
    runner.stop()
    runner.stop()


def test_memory_transport_runner_idles() -> None:
    """Over the memory transport the runner has nothing to read, starts and stops."""
    bus = MessageBus(MemoryTransport())
    bus.subscribe("t", lambda m: None)
    with Runner(bus, poll_timeout=0.05) as runner:
        assert runner.running
    assert not runner.running


async def test_async_runner_awaits_handlers_on_the_loop() -> None:
    """AsyncRunner runs async handlers on the running loop and acks them."""
    broker = FakeBroker()
    bus = AsyncMessageBus(broker)
    loops: list[asyncio.AbstractEventLoop] = []

    @bus.handler("job", group="g")
    async def job(message: Message) -> None:
        loops.append(asyncio.get_running_loop())
        if message.data == 2:
            raise ValueError("bad")

    async with AsyncRunner(bus, retry=NO_WAIT, poll_timeout=0.05) as runner:
        inbox = broker.inbox_by_group["g"]
        for n in (1, 2):
            inbox.put(encoded("job", n), f"p{n}")
        deadline = time.monotonic() + 5
        while len(inbox.acked) + len(inbox.dead) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
    assert inbox.acked == ["p1"]
    assert [(token, attempts) for token, _error, attempts in inbox.dead] == [("p2", 2)]
    assert set(loops) == {asyncio.get_running_loop()}
    assert runner.handled == 1


async def test_async_runner_run_stops_on_request() -> None:
    """AsyncRunner.run returns once request_stop() is called from another thread."""
    broker = FakeBroker()
    bus = AsyncMessageBus(broker)
    bus.subscribe("t", lambda m: None, group="g")
    runner = AsyncRunner(bus, poll_timeout=0.05)
    task = asyncio.create_task(runner.run(handle_signals=False))
    while not runner.running:  # noqa: ASYNC110 - the runner exposes a flag, not an event
        await asyncio.sleep(0.005)
    threading.Thread(target=runner.request_stop).start()
    await asyncio.wait_for(task, 5)
    assert broker.inbox_by_group["g"].closed
