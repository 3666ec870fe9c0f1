"""The in-memory broker and in-process pools: priority, starvation bound, delays, limits, stop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dtpyfw.core.retry import RetryPolicy
from dtpyfw.worker import (
    MemoryBroker,
    TaskCancelled,
    TaskFailed,
    TaskQueue,
    TaskRegistry,
    TaskState,
    Worker,
    WorkerSettings,
    task,
)
from dtpyfw.worker._broker import Head, choose
from dtpyfw.worker._records import Delivery

REGISTRY = TaskRegistry()
ORDER: list[int] = []
GATE = threading.Event()


@task(name="record", registry=REGISTRY)
def record(number: int) -> int:
    ORDER.append(number)
    return number


@task(name="arecord", registry=REGISTRY)
async def arecord(number: int) -> int:
    await asyncio.sleep(0)
    ORDER.append(number)
    return number


@task(name="blocked", registry=REGISTRY, timeout=0.2, retry=RetryPolicy(attempts=1))
def blocked() -> None:
    GATE.wait()  # a C-level wait: only the hard limit gets the worker past it


@task(name="gated", registry=REGISTRY)
def gated() -> str:
    GATE.wait(10)
    return "done"


@task(name="ablocked", registry=REGISTRY, timeout=0.2, retry=RetryPolicy(attempts=1))
async def ablocked() -> None:
    while True:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if GATE.is_set():  # the test is over: let the loop shut down cleanly
                raise
            # refuses to stop: the worker must abandon it


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    ORDER.clear()
    GATE.clear()
    yield
    GATE.set()


def make_queue(clock: Callable[[], float] = time.time, **settings: object) -> TaskQueue:
    options: dict[str, object] = {"poll_interval": 0.05, "shutdown_timeout": 5.0, **settings}
    worker_settings = WorkerSettings.model_validate(options)
    return TaskQueue(MemoryBroker(worker_settings, clock=clock), worker_settings, REGISTRY)


def take_all(queue: TaskQueue, consumer: str = "w") -> list[int]:
    """Take tasks one at a time (as one free slot does) and return their numbers."""
    taken = []
    while deliveries := queue.broker.exchange([], queue.settings.queues, 1, consumer):
        taken.append(deliveries[0].message.kwargs["number"])
    return taken


# -- the pick rule ----------------------------------------------------------------------------


def test_choose_takes_highest_priority_then_oldest() -> None:
    """Priority first, then enqueue order; no older low task waiting means no skip."""
    heads = [Head(5, 4, "a"), Head(9, 7, "b"), Head(9, 6, "c")]
    assert choose(heads, 0, 3) == (Head(9, 6, "c"), 1)  # passes over "a" (older, lower)
    assert choose([Head(9, 1, "x"), Head(0, 2, "y")], 7, 3) == (Head(9, 1, "x"), 0)
    assert choose([], 2, 3) == (None, 2)


def test_choose_takes_the_oldest_after_the_limit() -> None:
    """After `limit` picks in a row passed over an older task, the oldest goes next."""
    heads = [Head(9, 10, "high"), Head(0, 1, "low")]
    assert choose(heads, 2, 3) == (Head(9, 10, "high"), 3)
    assert choose(heads, 3, 3) == (Head(0, 1, "low"), 0)
    assert choose(heads, 50, 0) == (Head(9, 10, "high"), 51)  # limit 0: strict priority


# -- the broker ---------------------------------------------------------------------------


def test_strict_limit_drains_by_priority_then_age() -> None:
    """starvation_limit 0: every high task before any normal, normal before low, FIFO inside."""
    queue = make_queue(starvation_limit=0)
    for number, priority in enumerate([0, 5, 9, 0, 9, 5, 0, 9, 5]):
        queue.enqueue(record, (number,), priority=priority)
    assert take_all(queue) == [2, 4, 7, 1, 5, 8, 0, 3, 6]


def test_starvation_limit_lets_the_oldest_low_task_through() -> None:
    """With limit 3 and low tasks waiting first, every fourth pick is the oldest low one."""
    queue = make_queue(starvation_limit=3)
    for number in range(10):
        queue.enqueue(record, (number,), priority="low")
    for number in range(100, 120):
        queue.enqueue(record, (number,), priority="high")
    expected: list[int] = []
    highs, lows = iter(range(100, 120)), iter(range(10))
    for _ in range(6):
        expected += [next(highs), next(highs), next(highs), next(lows)]
    expected += [*highs, *lows]
    assert take_all(queue) == expected


def test_queues_share_one_priority_order() -> None:
    """A worker on two queues takes by priority across them, oldest first on a tie."""
    queue = make_queue(queues=["a", "b"], starvation_limit=0)
    queue.enqueue(record, (1,), queue="a", priority=5)
    queue.enqueue(record, (2,), queue="b", priority=9)
    queue.enqueue(record, (3,), queue="b", priority=5)
    queue.enqueue(record, (4,), queue="c", priority=9)  # not served
    assert take_all(queue) == [2, 1, 3]


def test_delayed_tasks_wait_for_their_time() -> None:
    """delay= holds a task back until the clock passes its eta, then it is ready."""
    clock = FakeClock()
    queue = make_queue(clock)
    handle = queue.enqueue(record, (1,), delay=30)
    assert handle.status() is TaskState.DELAYED
    assert queue.broker.seconds_until_due(["default"]) == 30  # type: ignore[attr-defined]
    assert take_all(queue) == []
    clock.now += 30
    assert take_all(queue) == [1]


def test_retry_backoff_is_scheduled_on_the_clock() -> None:
    """A retried task comes back as the next attempt after its backoff, not before."""
    from dtpyfw.worker._records import Outcome

    clock = FakeClock()
    queue = make_queue(clock)
    queue.enqueue(record, (1,))
    (delivery,) = queue.broker.exchange([], ["default"], 1, "w")
    retry = Outcome("retry", error="ConnectionError: x", delay=2.5)
    assert queue.broker.exchange([(delivery, retry)], ["default"], 1, "w") == []
    clock.now += 2.4
    assert queue.broker.exchange([], ["default"], 1, "w") == []
    clock.now += 0.1
    (again,) = queue.broker.exchange([], ["default"], 1, "w")
    assert again.id == delivery.id
    assert again.attempt == 2
    stale = queue.broker.exchange([(delivery, Outcome("ok", result="1"))], ["default"], 0, "w")
    assert stale == []
    assert queue.info(delivery.id).state is TaskState.RUNNING


def test_cancelled_task_never_runs(queue_with_worker: Callable[..., TaskQueue]) -> None:
    """Cancelling a waiting task makes result() raise TaskCancelled; workers skip it."""
    queue = make_queue()
    handle = queue.enqueue(record, (1,), delay=60)
    assert handle.cancel()
    assert not handle.cancel()
    with pytest.raises(TaskCancelled):
        handle.result(timeout=0)
    assert take_all(queue) == []
    (row,) = queue.stats()
    assert (row.cancelled, row.delayed) == (1, 0)


def test_results_expire_after_result_ttl() -> None:
    """A finished task's record goes away result_ttl seconds after it finished."""
    from dtpyfw.worker._records import Outcome

    clock = FakeClock()
    queue = make_queue(clock, result_ttl=10)
    handle = queue.enqueue(record, (1,))
    (delivery,) = queue.broker.exchange([], ["default"], 1, "w")
    queue.broker.exchange([(delivery, Outcome("ok", result="1"))], ["default"], 0, "w")
    assert handle.result(timeout=0) == 1
    clock.now += 10
    assert handle.status() is TaskState.UNKNOWN


def test_purge_and_counts() -> None:
    """purge empties one state of one queue and counts what it removed."""
    queue = make_queue()
    for number in range(5):
        queue.enqueue(record, (number,))
    queue.enqueue(record, (9,), delay=60)
    progress: list[tuple[int, int]] = []
    assert queue.purge("default", "queued", batch=2, progress=lambda *p: progress.append(p)) == 5
    assert progress == [(2, 5), (4, 5), (5, 5)]
    assert queue.broker.count("default", "delayed") == 1
    assert take_all(queue) == []


# -- the threads pool -------------------------------------------------------------------------


@pytest.fixture
def queue_with_worker() -> Iterator[Callable[..., TaskQueue]]:
    started: list[Worker] = []

    def start(queue: TaskQueue, **options: object) -> TaskQueue:
        worker = Worker(queue, **options)  # type: ignore[arg-type]
        worker.start()
        started.append(worker)
        return queue

    yield start
    GATE.set()
    for worker in started:
        worker.stop(timeout=2)


class RecordingBroker(MemoryBroker):
    """Remembers the order in which workers took tasks."""

    def __init__(self, settings: WorkerSettings) -> None:
        super().__init__(settings)
        self.taken: list[int] = []

    def exchange(self, *args: Any, **kwargs: Any) -> list[Delivery]:
        with self._cond:  # the lock the broker takes inside: claims are recorded in order
            deliveries = super().exchange(*args, **kwargs)
            self.taken += [d.message.kwargs["number"] for d in deliveries]
        return deliveries


def test_threads_pool_drains_by_priority_under_load(
    queue_with_worker: Callable[..., TaskQueue],
) -> None:
    """300 tasks of three priorities queued before 4 slots start: taken strictly by priority."""
    settings = WorkerSettings(starvation_limit=0, concurrency=4, poll_interval=0.05)
    broker = RecordingBroker(settings)
    queue = TaskQueue(broker, settings, REGISTRY)
    priorities = [0, 5, 9] * 100
    handles = [queue.enqueue(record, (n,), priority=p) for n, p in enumerate(priorities)]
    queue_with_worker(queue)
    wait_until(lambda: len(ORDER) == 300)
    levels = [priorities[number] for number in broker.taken]
    assert levels == [9] * 100 + [5] * 100 + [0] * 100
    assert all(handle.result(timeout=1) == n for n, handle in enumerate(handles))


def test_sync_and_async_tasks_share_the_pool(queue_with_worker: Callable[..., TaskQueue]) -> None:
    """Async tasks run on the pool's loop thread; their results come back the same way."""
    queue = queue_with_worker(make_queue(concurrency=2))
    handles = [queue.enqueue(arecord if n % 2 else record, (n,)) for n in range(20)]
    assert [h.result(timeout=5) for h in handles] == list(range(20))


def test_hard_limit_abandons_the_task_and_the_slot_is_replaced() -> None:
    """A task stuck past its hard limit is recorded failed; the next task still runs."""
    queue = make_queue(concurrency=1)
    worker = Worker(queue)
    worker.start()
    stuck = queue.enqueue(blocked)
    after = queue.enqueue(record, (7,))
    assert after.result(timeout=5) == 7
    with pytest.raises(TaskFailed, match="HardTimeLimitExceeded: task 'blocked' still ran after"):
        stuck.result(timeout=5)
    assert worker.running == 0
    started = time.monotonic()
    worker.stop(timeout=5)  # the abandoned thread is still stuck: stop does not wait for it
    assert time.monotonic() - started < 2


def test_hard_limit_abandons_an_async_task_that_ignores_cancellation(
    queue_with_worker: Callable[..., TaskQueue],
) -> None:
    """An async task that swallows cancellation is abandoned at its hard limit too."""
    queue = queue_with_worker(make_queue(concurrency=1))
    stuck = queue.enqueue(ablocked)
    with pytest.raises(TaskFailed, match="HardTimeLimitExceeded"):
        stuck.result(timeout=5)
    assert queue.enqueue(record, (8,)).result(timeout=5) == 8


def test_stop_lets_running_tasks_finish() -> None:
    """stop() waits for a running task that ends within the grace period."""
    queue = make_queue(concurrency=1)
    worker = Worker(queue)
    worker.start()
    handle = queue.enqueue(gated)
    wait_until(lambda: handle.status() is TaskState.RUNNING)
    threading.Timer(0.1, GATE.set).start()
    worker.stop(timeout=5)
    assert handle.status() is TaskState.SUCCEEDED


def test_stop_puts_tasks_still_running_back_in_their_queue() -> None:
    """After the grace period a running task is released untouched, attempt unchanged."""
    queue = make_queue(concurrency=1)
    worker = Worker(queue)
    worker.start()
    handle = queue.enqueue(gated)
    wait_until(lambda: handle.status() is TaskState.RUNNING)
    worker.stop(timeout=0.05)
    info = queue.info(handle.id)
    assert info is not None
    assert (info.state, info.attempt) == (TaskState.QUEUED, 1)
    assert worker.liveness().ok is False
    assert worker.readiness().error == "stopped"
    GATE.set()


def test_worker_reports_liveness_readiness_and_heartbeat() -> None:
    """A started worker is live and ready, beats into the broker, and forgets it at stop."""
    queue = make_queue(concurrency=2, heartbeat_interval=0.05)
    worker = Worker(queue, worker_id="w-1")
    assert worker.liveness().error == "not started"
    worker.start()
    try:
        assert worker.liveness().ok
        assert worker.readiness().ok
        (info,) = queue.workers()
        assert (info.id, info.concurrency, info.queues) == ("w-1", 2, ("default",))
        queue.enqueue(record, (1,)).result(timeout=5)
        wait_until(lambda: queue.workers()[0].processed == 1)
    finally:
        worker.stop()
    assert queue.workers() == []


# -- the asyncio pool -------------------------------------------------------------------------


async def test_asyncio_pool_runs_tasks_on_the_running_loop() -> None:
    """Async tasks run on this loop by priority, sync ones in threads; astop lets them end."""
    queue = make_queue(strategy="asyncio", concurrency=1, starvation_limit=0)
    worker = Worker(queue)
    assert worker.pool == "asyncio"
    for number, priority in [(1, 0), (2, 9), (3, 5)]:
        await queue.aenqueue(arecord, (number,), priority=priority)
    await worker.astart()
    handles = [await queue.aenqueue(record if n % 2 else arecord, (n,)) for n in range(10, 16)]
    results = [await handle.aresult(timeout=5) for handle in handles]
    await worker.astop()
    assert results == list(range(10, 16))
    assert ORDER == [2, 3, 10, 11, 12, 13, 14, 15, 1]


async def test_asyncio_pool_enforces_both_limits() -> None:
    """The asyncio pool abandons a task past its hard limit and carries on."""
    queue = make_queue(strategy="asyncio", concurrency=1)
    worker = Worker(queue)
    await worker.astart()
    try:
        stuck = await queue.aenqueue(ablocked)
        with pytest.raises(TaskFailed, match="HardTimeLimitExceeded"):
            await stuck.aresult(timeout=5)
        sync_stuck = await queue.aenqueue(blocked)
        with pytest.raises(TaskFailed, match="HardTimeLimitExceeded"):
            await sync_stuck.aresult(timeout=5)
        assert await (await queue.aenqueue(arecord, (5,))).aresult(timeout=5) == 5
    finally:
        GATE.set()
        await worker.astop()
