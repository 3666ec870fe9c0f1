"""The distributed strategies on real servers: priorities, retries, DLQ, leases, limits.

Every test runs on the ``redis`` strategy and on ``kafka`` (Kafka-protocol
broker from the harness, task state in Redis) unless it says otherwise.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from dtpyfw.core.retry import RetryPolicy
from dtpyfw.kafka import KafkaSettings
from dtpyfw.redis import RedisSettings
from dtpyfw.testing import wait_until
from dtpyfw.worker import (
    KafkaBroker,
    RedisBroker,
    SoftTimeLimitExceeded,
    TaskCancelled,
    TaskFailed,
    TaskHandle,
    TaskQueue,
    TaskRegistry,
    TaskState,
    Worker,
    WorkerSettings,
    current_task,
    task,
)
from dtpyfw.worker._records import Delivery, Outcome

REGISTRY = TaskRegistry()
ORDER: list[int] = []
ATTEMPTS: list[tuple[int, float]] = []
RUNS: dict[int, int] = {}
TICKS: list[datetime] = []
FAIL = threading.Event()
GATE = threading.Event()
_LOCK = threading.Lock()


@task(name="record", registry=REGISTRY)
def record(number: int) -> int:
    with _LOCK:
        ORDER.append(number)
        RUNS[number] = RUNS.get(number, 0) + 1
    return number


@task(name="slow_record", registry=REGISTRY)
def slow_record(number: int, seconds: float) -> int:
    time.sleep(seconds)
    return record(number)


@task(
    name="flaky",
    registry=REGISTRY,
    retry=RetryPolicy(attempts=3, initial_delay=0.2, multiplier=2, jitter=0),
)
def flaky() -> str:
    context = current_task()
    assert context is not None
    ATTEMPTS.append((context.attempt, time.monotonic()))
    if FAIL.is_set():
        raise ConnectionError(f"down on attempt {context.attempt}")
    return "up"


@task(
    name="limited", registry=REGISTRY, soft_timeout=0.1, timeout=0.5, retry=RetryPolicy(attempts=1)
)
def limited(mode: str) -> str:
    if mode == "soft":
        try:
            while True:
                time.sleep(0.005)
        except SoftTimeLimitExceeded:
            return "caught the soft limit"
    GATE.wait()  # blocks in C: only the hard limit ends the wait
    return "released"


@task(name="gated", registry=REGISTRY)
def gated() -> str:
    GATE.wait(10)
    return "done"


@task(name="unserialisable", registry=REGISTRY)
def unserialisable() -> Any:
    return threading.Lock()


@task(name="beat", registry=REGISTRY)
def beat() -> None:
    context = current_task()
    assert context is not None
    assert context.tick is not None
    with _LOCK:
        TICKS.append(context.tick)


@task(name="ping", registry=REGISTRY)
async def ping(value: int) -> int:
    return value


@pytest.fixture(scope="session")
def redis_test_db() -> int:
    """A database of its own: other suites flush 15 while these tests run."""
    return 13


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    ORDER.clear()
    TICKS.clear()
    ATTEMPTS.clear()
    RUNS.clear()
    FAIL.clear()
    GATE.clear()
    yield
    GATE.set()


@pytest.fixture(params=["redis", "kafka"])
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_queue(
    strategy: str, redis_url: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., TaskQueue]]:
    made: list[TaskQueue] = []
    # Kafka keeps topics and group offsets for the whole session: a namespace per test
    # keeps one test's records and group members away from the next.
    namespace = "dtpyfw" if strategy == "redis" else f"t{uuid.uuid4().hex[:10]}"

    def make(**options: Any) -> TaskQueue:
        settings = WorkerSettings.model_validate(
            {
                "strategy": strategy,
                "namespace": namespace,
                "poll_interval": 0.05,
                "shutdown_timeout": 5,
                **options,
            }
        )
        redis = RedisSettings.model_validate({"url": redis_url})
        if strategy == "kafka":
            kafka = KafkaSettings.model_validate(request.getfixturevalue("kafka_test_settings"))
            broker: RedisBroker = KafkaBroker(settings, redis, kafka)
        else:
            broker = RedisBroker(settings, redis)
        queue = TaskQueue(broker, settings, REGISTRY)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.close()


@pytest.fixture(autouse=True)
def _open_gate_before_workers_stop(start: Callable[..., Worker]) -> Iterator[None]:
    """Set up after ``start``, so torn down before it: gated tasks end, workers stop at once."""
    yield
    GATE.set()


def take_one(queue: TaskQueue, consumer: str) -> Delivery:
    """Take one task by hand, as a worker slot does (Kafka needs a few polls to join)."""
    deadline = time.monotonic() + 10
    while not (deliveries := queue.broker.exchange([], ["default"], 1, consumer)):
        assert time.monotonic() < deadline, "nothing to take"
        queue.broker.wait(["default"], 0.2, consumer)
    (delivery,) = deliveries
    return delivery


def take_all(queue: TaskQueue) -> list[int]:
    taken = []
    while deliveries := queue.broker.exchange([], ["default"], 1, "reader"):
        taken.append(deliveries[0].message.kwargs["number"])
    return taken


@pytest.mark.parametrize("strategy", ["redis"])
def test_priority_and_the_starvation_rule_match_the_memory_broker(
    make_queue: Callable[..., TaskQueue],
) -> None:
    """The Lua pick gives exactly the order the documented rule (and MemoryBroker) gives."""
    strict = make_queue(starvation_limit=0, namespace="strict")
    for number, priority in enumerate([0, 5, 9, 0, 9, 5, 0, 9, 5]):
        strict.enqueue(record, (number,), priority=priority)
    assert take_all(strict) == [2, 4, 7, 1, 5, 8, 0, 3, 6]

    fair = make_queue(starvation_limit=3, namespace="fair")
    for number in range(10):
        fair.enqueue(record, (number,), priority="low")
    for number in range(100, 120):
        fair.enqueue(record, (number,), priority="high")
    expected: list[int] = []
    highs, lows = iter(range(100, 120)), iter(range(10))
    for _ in range(6):
        expected += [next(highs), next(highs), next(highs), next(lows)]
    assert take_all(fair) == [*expected, *highs, *lows]


def test_workers_drain_higher_priorities_first_under_load(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker]
) -> None:
    """600 tasks queued first; two workers of 3 slots take every high before any low."""
    queue = make_queue(starvation_limit=0)
    priorities = [0, 5, 9] * 200
    handles = [
        queue.enqueue(record, (number,), priority=priority)
        for number, priority in enumerate(priorities)
    ]
    start(queue, concurrency=3)
    start(queue, concurrency=3)
    wait_until(lambda: len(ORDER) == 600)
    # The claim script stamps `started` (Redis server time) as it takes each task,
    # so sorting by it gives the order the workers took them in.
    taken = sorted((info.started_at, info.priority) for info in map(TaskHandle.info, handles))
    assert [priority for _started, priority in taken] == [9] * 200 + [5] * 200 + [0] * 200
    assert sorted(RUNS.values()) == [1] * 600


def test_retries_back_off_then_the_dead_letter_queue_and_redrive(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker]
) -> None:
    """Attempts are spaced by the policy's backoff; the last failure is dead, then re-driven."""
    queue = make_queue()
    start(queue, concurrency=2)
    FAIL.set()
    handle = queue.enqueue(flaky)
    with pytest.raises(
        TaskFailed, match=r"after 3 attempt\(s\): ConnectionError: down on attempt 3"
    ):
        handle.result(timeout=10)
    (one, t1), (two, t2), (three, t3) = ATTEMPTS
    assert (one, two, three) == (1, 2, 3)
    assert t2 - t1 >= 0.2
    assert t3 - t2 >= 0.4
    (dead,) = queue.dead_letters()
    assert (dead.id, dead.state, dead.attempt) == (handle.id, TaskState.DEAD, 3)
    assert dead.error == "ConnectionError: down on attempt 3"

    FAIL.clear()
    assert queue.redrive() == 1
    assert handle.result(timeout=10) == "up"
    assert queue.dead_letters() == []
    (row,) = queue.stats()
    assert (row.failed, row.retried, row.dead_lettered, row.redriven) == (3, 2, 1, 1)
    assert (row.succeeded, row.dead, row.running, row.queued) == (1, 0, 0, 0)


def test_soft_and_hard_time_limits(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker]
) -> None:
    """The soft limit raises inside the task; past the hard limit the worker moves on."""
    queue = make_queue()
    start(queue, concurrency=1)
    assert queue.enqueue(limited, ("soft",)).result(timeout=5) == "caught the soft limit"
    stuck = queue.enqueue(limited, ("hard",))
    after = queue.enqueue(record, (1,))
    assert after.result(timeout=5) == 1
    with pytest.raises(TaskFailed, match="HardTimeLimitExceeded"):
        stuck.result(timeout=5)


def test_bad_input_is_recorded_and_the_worker_carries_on(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker], redis_url: str
) -> None:
    """Unknown task, invalid arguments, a result not JSON, a mangled envelope: all recorded."""
    queue = make_queue()
    worker = start(queue, concurrency=1)
    unknown = queue.enqueue("no.such.task", [1])
    sender = TaskQueue(queue.broker, queue.settings, TaskRegistry())  # knows no task
    invalid = sender.enqueue("record", ["seven"])
    unjson = queue.enqueue(unserialisable)
    fine = queue.enqueue(record, (3,))
    assert fine.result(timeout=5) == 3
    errors = {}
    for handle in (unknown, invalid, unjson):
        with pytest.raises(TaskFailed) as caught:
            handle.result(timeout=5)
        errors[handle.name] = caught.value.error
    assert errors["no.such.task"].startswith("TaskNotFound: no task named 'no.such.task'")
    assert errors["record"].startswith(
        "InvalidTaskArguments: task 'record': number: Input should be a valid integer"
    )
    assert errors["unserialisable"].startswith(
        "InvalidTaskResult: task 'unserialisable' returned a lock, which is not JSON"
    )
    mangled = queue.enqueue(record, (4,), delay=60)
    job = f"{{{queue.settings.namespace}}}:job:"
    with redis.Redis.from_url(redis_url) as client:
        client.hset(job + mangled.id, "msg", b"{not json")
    assert queue.cancel(mangled.id) is True  # cancel reads the state, not the envelope
    broken = queue.enqueue(record, (5,), delay=0.3)  # mangled before a worker can take it
    with redis.Redis.from_url(redis_url) as client:
        client.hset(job + broken.id, "msg", b"{not json")
    wait_until(lambda: len(queue.dead_letters()) == 4)
    info = queue.info(broken.id)
    assert info is not None
    assert (info.name, info.state, info.queue) == ("?", TaskState.DEAD, "default")
    assert info.error is not None
    assert info.error.startswith("WorkerError: the stored task envelope is not valid")
    assert worker.liveness().ok
    assert worker.readiness().ok


def test_a_task_of_a_silent_worker_is_redelivered_once(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker]
) -> None:
    """A lease nobody renews expires; the task runs again; the late outcome is ignored."""
    queue = make_queue(visibility_timeout=0.3)
    handle = queue.enqueue(record, (5,))
    silent = make_queue(visibility_timeout=0.3)
    ghost = take_one(silent, "ghost")  # takes it, then goes silent (and leaves the group)
    silent.close()
    assert handle.status() is TaskState.RUNNING
    start(queue, concurrency=1)
    # On Kafka the new worker first waits for the group to drop the silent member
    # (librdkafka's mock cluster garbles kafka-python's LeaveGroup: a session timeout).
    assert handle.result(timeout=20) == 5
    late = Outcome("ok", result="999")
    queue.broker.exchange([(ghost, late)], ["default"], 0, "ghost")
    assert handle.result(timeout=0) == 5
    (row,) = queue.stats()
    assert (row.redelivered, row.succeeded, row.running) == (1, 1, 0)


def test_a_live_worker_keeps_its_lease_past_the_visibility_timeout(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker]
) -> None:
    """Leases are renewed: a task longer than the timeout runs once with two workers."""
    queue = make_queue(visibility_timeout=0.4)
    start(queue, concurrency=1)
    start(queue, concurrency=1)
    handle = queue.enqueue(slow_record, (8, 1.0))
    assert handle.result(timeout=5) == 8
    assert RUNS == {8: 1}
    assert queue.stats()[0].redelivered == 0


def test_stop_releases_a_running_task_to_another_worker(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker]
) -> None:
    """A task still running at the end of the grace goes back, untouched, for another."""
    queue = make_queue()
    first = Worker(queue, concurrency=1)
    first.start()
    handle = queue.enqueue(gated)
    wait_until(lambda: handle.status() is TaskState.RUNNING)
    first.stop(timeout=0.05)
    info = handle.info()
    assert info is not None
    assert (info.state, info.attempt) == (TaskState.QUEUED, 1)
    GATE.set()
    start(queue, concurrency=1)
    assert handle.result(timeout=5) == "done"


def test_delay_eta_cancel_and_idempotency(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker]
) -> None:
    """Delayed tasks wait for their eta; cancelled ones never run; keys dedupe for a while."""
    queue = make_queue(idempotency_ttl=0.3)
    start(queue, concurrency=2)
    eta = datetime.now(UTC) + timedelta(seconds=0.4)
    later = queue.enqueue(record, (1,), eta=eta)
    cancelled = queue.enqueue(record, (2,), delay=0.3)
    assert cancelled.cancel()
    assert later.status() is TaskState.DELAYED
    assert later.result(timeout=5) == 1
    info = later.info()
    assert info is not None
    assert info.started_at is not None
    assert info.started_at >= eta - timedelta(milliseconds=20)
    with pytest.raises(TaskCancelled):
        cancelled.result(timeout=0)
    assert not cancelled.cancel()
    assert 2 not in RUNS

    first = queue.enqueue(record, (3,), idempotency_key="k")
    again = queue.enqueue(record, (4,), idempotency_key="k")
    assert (again.id, again.created) == (first.id, False)
    wait_until(lambda: queue.enqueue(record, (5,), idempotency_key="k").created)


def test_results_expire_with_their_ttl(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker]
) -> None:
    """A finished record lives result_ttl seconds in Redis, then reads as unknown."""
    queue = make_queue(result_ttl=0.3)
    start(queue, concurrency=1)
    handle = queue.enqueue(record, (1,))
    assert handle.result(timeout=5) == 1
    wait_until(lambda: handle.status() is TaskState.UNKNOWN)


async def test_async_producer_side(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker]
) -> None:
    """aenqueue, aresult, astatus, acancel and aping talk to Redis from a loop."""
    queue = make_queue()
    start(queue, concurrency=2)
    await queue.aping()
    handle = await queue.aenqueue(ping, (41,))
    assert await handle.aresult(timeout=5) == 41
    assert await handle.astatus() is TaskState.SUCCEEDED
    waiting = await queue.aenqueue(record, (1,), delay=30)
    assert await waiting.acancel()
    info = await waiting.ainfo()
    assert info is not None
    assert info.state is TaskState.CANCELLED
    await queue.aclose()


def test_stats_workers_purge_and_dead_letter_listing(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker]
) -> None:
    """Stats per queue and priority, heartbeats of live workers, purge, DLQ pages."""
    queue = make_queue(queues=["mail"], heartbeat_interval=0.1)
    for number in range(5):
        queue.enqueue(record, (number,), queue="mail", priority="high")
    queue.enqueue(record, (9,), queue="mail", delay=60)
    sender = TaskQueue(queue.broker, queue.settings, TaskRegistry())
    for _ in range(3):
        sender.enqueue("record", ["bad"], queue="mail")
    assert queue.broker.count("mail", "queued") == 8
    assert queue.purge("mail", "delayed") == 1
    worker = start(queue, worker_id="mail-worker")
    wait_until(lambda: len(queue.dead_letters("mail")) == 3)
    wait_until(lambda: len(ORDER) == 5)
    rows = {row.priority: row for row in queue.stats()}
    assert (rows[9].enqueued, rows[9].succeeded) == (5, 5)
    assert (rows[5].enqueued, rows[5].dead, rows[5].dead_lettered) == (4, 3, 3)
    assert [row.queue for row in rows.values()] == ["mail", "mail"]
    assert [w.id for w in queue.workers()] == ["mail-worker"]
    page = queue.dead_letters("mail", limit=2, offset=1)
    assert len(page) == 2
    assert page[0].finished_at is not None
    assert queue.purge("mail", "dead") == 3
    assert queue.dead_letters() == []
    worker.stop()
    assert queue.workers() == []


def test_schedules_fire_each_tick_once_across_workers(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker]
) -> None:
    """Two workers run the same 0.25 s schedule in real time: one run per tick, none missed."""
    # catch_up all: a tick the scheduler thread sees late (a loaded machine) still fires.
    schedules = [{"name": "beat", "task": "beat", "every": 0.25, "catch_up": "all"}]
    queue = make_queue(schedules=schedules)
    start(queue, concurrency=1)
    start(queue, concurrency=1)
    wait_until(lambda: len(TICKS) >= 5, timeout=5)
    ticks = sorted(TICKS)
    assert len(set(ticks)) == len(ticks)
    gaps = {later - earlier for earlier, later in itertools.pairwise(ticks)}
    assert gaps == {timedelta(seconds=0.25)}
    last = queue.broker.last_tick("beat")
    assert last is not None
    assert last >= round(ticks[-1].timestamp() * 1000)


def test_scripts_redis_lost_are_loaded_again(
    make_queue: Callable[..., TaskQueue], start: Callable[..., Worker], redis_url: str
) -> None:
    """After SCRIPT FLUSH (or a restart) the pipelined EVALSHA calls reload and go on."""
    queue = make_queue()
    start(queue, concurrency=1)
    assert queue.enqueue(record, (1,)).result(timeout=10) == 1
    with redis.Redis.from_url(redis_url) as client:
        client.script_flush()
    handles = queue.enqueue_many(record, [(2,), (3,)])
    assert [handle.result(timeout=10) for handle in handles] == [2, 3]
    assert RUNS == {1: 1, 2: 1, 3: 1}
