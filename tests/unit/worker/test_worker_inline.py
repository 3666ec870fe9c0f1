"""The inline strategy: outcomes, retries, dead letters, bad input and time limits, no threads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from dtpyfw.core.context import bind_context
from dtpyfw.core.retry import RetryPolicy
from dtpyfw.worker import (
    InlineBroker,
    InvalidTaskArguments,
    SoftTimeLimitExceeded,
    TaskFailed,
    TaskNotFound,
    TaskQueue,
    TaskRegistry,
    TaskState,
    WorkerSettings,
    current_task,
    task,
)

REGISTRY = TaskRegistry()
SEEN: list[object] = []


@task(name="double", registry=REGISTRY)
def double(value: int) -> int:
    return value * 2


@task(name="flaky", registry=REGISTRY, retry=RetryPolicy(attempts=3, initial_delay=5))
def flaky(fail_times: int) -> str:
    context = current_task()
    assert context is not None
    SEEN.append(context.attempt)
    if context.attempt <= fail_times:
        raise ConnectionError(f"attempt {context.attempt} failed")
    return f"ok on {context.attempt} of {context.max_attempts}"


@task(
    name="picky",
    registry=REGISTRY,
    retry=RetryPolicy(attempts=5, initial_delay=0, retry_on=(ConnectionError,)),
)
def picky() -> None:
    raise KeyError("not transient")


@task(name="unserialisable", registry=REGISTRY)
def unserialisable():  # type: ignore[no-untyped-def]
    return object()


@task(name="slow", registry=REGISTRY, soft_timeout=0.05, retry=RetryPolicy(attempts=1))
def slow() -> str:
    try:
        while True:
            time.sleep(0.005)
    except SoftTimeLimitExceeded:
        SEEN.append("cleaned up")
        raise


@task(name="aslow", registry=REGISTRY, soft_timeout=0.05, retry=RetryPolicy(attempts=1))
async def aslow() -> str:
    try:
        await asyncio.sleep(30)
    except SoftTimeLimitExceeded:
        SEEN.append("async cleaned up")
        return "stopped early"
    return "slept"


@task(name="context", registry=REGISTRY)
def context() -> dict[str, object]:
    from dtpyfw.core.context import current_context

    found = current_task()
    assert found is not None
    return {"correlation": current_context().correlation_id, "queue": found.queue}


@pytest.fixture
def queue() -> Iterator[TaskQueue]:
    SEEN.clear()
    settings = WorkerSettings(strategy="inline")
    tasks = TaskQueue(InlineBroker(settings, REGISTRY), settings, REGISTRY)
    with tasks.bind():
        yield tasks
    tasks.close()


def test_delay_runs_the_task_before_returning(queue: TaskQueue) -> None:
    """The handle is finished as soon as delay() returns."""
    handle = double.delay(21)
    assert handle.status() is TaskState.SUCCEEDED
    assert handle.result(timeout=0) == 42


def test_retries_until_success_and_counts_attempts(queue: TaskQueue) -> None:
    """A transient failure is retried at once inline; the attempt number grows."""
    assert flaky.delay(2).result(timeout=0) == "ok on 3 of 3"
    assert SEEN == [1, 2, 3]
    (row,) = queue.stats()
    assert (row.succeeded, row.failed, row.retried, row.dead_lettered) == (1, 2, 2, 0)


def test_last_failure_goes_to_the_dead_letter_queue_and_back(queue: TaskQueue) -> None:
    """After the last try the task is dead with its error; re-driving runs it again."""
    handle = flaky.delay(5)
    with pytest.raises(TaskFailed, match=r"failed after 3 attempt\(s\): ConnectionError"):
        handle.result(timeout=0)
    (dead,) = queue.dead_letters()
    assert dead.id == handle.id
    assert dead.state is TaskState.DEAD
    assert dead.traceback is not None
    assert "attempt 3 failed" in dead.traceback
    assert queue.redrive() == 1
    assert queue.dead_letters() == []
    assert handle.status() is TaskState.QUEUED  # inline runs at enqueue, not at re-drive


def test_exceptions_outside_retry_on_are_not_retried(queue: TaskQueue) -> None:
    """retry_on limits what is retried: anything else is dead on its first attempt."""
    handle = picky.delay()
    with pytest.raises(TaskFailed, match=r"after 1 attempt\(s\): KeyError"):
        handle.result(timeout=0)


def test_unknown_task_is_a_recorded_error(queue: TaskQueue) -> None:
    """A name no worker knows ends dead with TaskNotFound on the task."""
    handle = queue.enqueue("nobody.knows", [1])
    info = handle.info()
    assert info is not None
    assert info.state is TaskState.DEAD
    assert info.error is not None
    assert info.error.startswith("TaskNotFound: no task named")
    with pytest.raises(TaskFailed, match=r"nobody\.knows"):
        handle.result(timeout=0)


def test_arguments_failing_validation_never_reach_the_broker(queue: TaskQueue) -> None:
    """delay() validates against the signature and raises in the caller."""
    with pytest.raises(InvalidTaskArguments, match="value: Input should be a valid integer"):
        double.delay("lots")
    assert queue.stats() == []


def test_arguments_failing_validation_in_the_worker_are_recorded(queue: TaskQueue) -> None:
    """A message whose data does not fit (sent by name, unchecked) dies with the reason."""
    registry = TaskRegistry()  # the sender does not know the task, so nothing is checked
    sender = TaskQueue(queue.broker, queue.settings, registry)
    handle = sender.enqueue("double", ["lots"])
    info = queue.info(handle.id)
    assert info is not None
    assert info.state is TaskState.DEAD
    assert info.error == (
        "InvalidTaskArguments: task 'double': value: Input should be a valid integer, "
        "unable to parse string as an integer"
    )


def test_unserialisable_result_is_a_recorded_error(queue: TaskQueue) -> None:
    """A result that is not JSON fails the task (not retried) with a clear error."""
    handle = unserialisable.delay()
    with pytest.raises(TaskFailed, match="returned a object, which is not JSON-serialisable"):
        handle.result(timeout=0)


def test_soft_time_limit_raises_inside_a_sync_task(queue: TaskQueue) -> None:
    """The task sees SoftTimeLimitExceeded, cleans up, and fails with it recorded."""
    handle = slow.delay()
    with pytest.raises(TaskFailed, match="SoftTimeLimitExceeded"):
        handle.result(timeout=0)
    assert SEEN == ["cleaned up"]


def test_soft_time_limit_raises_inside_an_async_task(queue: TaskQueue) -> None:
    """An async task gets the exception at its await and may finish normally."""
    assert aslow.delay().result(timeout=0) == "stopped early"
    assert SEEN == ["async cleaned up"]


async def test_adelay_awaits_on_the_callers_loop(queue: TaskQueue) -> None:
    """adelay() runs an async task on the running loop and aresult() reads it."""
    handle = await aslow.adelay()
    assert await handle.aresult(timeout=1) == "stopped early"
    assert await handle.astatus() is TaskState.SUCCEEDED
    assert not await handle.acancel()


def test_the_correlation_id_travels_with_the_task(queue: TaskQueue) -> None:
    """The caller's correlation id is bound while the task runs."""
    with bind_context(correlation_id="order-7"):
        handle = context.apply(queue="reports")
    assert handle.result(timeout=0) == {"correlation": "order-7", "queue": "reports"}


def test_idempotency_key_returns_the_first_task(queue: TaskQueue) -> None:
    """A second enqueue with the same key gives the first task's handle."""
    first = double.apply((1,), idempotency_key="once")
    second = double.apply((2,), idempotency_key="once")
    assert first.created
    assert not second.created
    assert second.id == first.id
    assert second.result(timeout=0) == 2


def test_unknown_id_has_no_record(queue: TaskQueue) -> None:
    """A handle on an id never enqueued reads as unknown and result() says so."""
    handle = queue.handle("0" * 32)
    assert handle.status() is TaskState.UNKNOWN
    with pytest.raises(TaskNotFound, match="no record of task"):
        handle.result(timeout=0)


def test_delay_and_eta_are_checked(queue: TaskQueue) -> None:
    """delay and eta together, a negative delay and a naive eta are refused."""
    from datetime import datetime

    with pytest.raises(InvalidTaskArguments, match="not both"):
        double.apply((1,), delay=1, eta=datetime.now().astimezone())
    with pytest.raises(InvalidTaskArguments, match="must not be negative"):
        double.apply((1,), delay=-1)
    with pytest.raises(InvalidTaskArguments, match="aware"):
        double.apply((1,), eta=datetime(2030, 1, 1))
