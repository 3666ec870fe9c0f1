"""The producer side: enqueue tasks, follow them with handles, operate the queues.

:class:`TaskQueue` is what ``container.worker.queue()`` gives and what
``task.delay()`` uses once bound. It validates arguments against the task's
signature before anything is stored, so a bad call fails in the caller.
"""

from __future__ import annotations

__all__ = ["TaskHandle", "TaskQueue"]

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic_core import PydanticSerializationError, to_jsonable_python

from dtpyfw.core.context import current_context
from dtpyfw.worker._broker import Broker, PurgeTarget, Tick
from dtpyfw.worker._errors import (
    InvalidTaskArguments,
    ResultTimeout,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
)
from dtpyfw.worker._priority import Priority, PriorityLike, parse_priority
from dtpyfw.worker._records import (
    TASK_SOURCE,
    QueueStats,
    TaskInfo,
    TaskMessage,
    TaskState,
    WorkerInfo,
)
from dtpyfw.worker._settings import WorkerSettings
from dtpyfw.worker._task import Task, TaskRegistry, bind_queue, default_registry, unbind_queue

if TYPE_CHECKING:
    from dtpyfw.worker._worker import Worker

R = TypeVar("R")
#: ``progress(done, total)`` for long operations (re-drive, purge).
Progress = Callable[[int, int], None]
_FOREVER = 365 * 24 * 3600.0


class TaskHandle(Generic[R]):
    """One enqueued task: follow its state, wait for its result, or cancel it.

    ``created`` is False when an idempotency key matched a task enqueued
    earlier: the handle then follows that task.
    """

    __slots__ = ("_queue", "_task", "created", "id", "name")

    def __init__(
        self,
        queue: TaskQueue,
        task_id: str,
        name: str,
        task: Task[Any, R] | None = None,
        *,
        created: bool = True,
    ) -> None:
        self._queue = queue
        self._task = task
        self.id = task_id
        self.name = name
        self.created = created

    def __repr__(self) -> str:
        return f"<TaskHandle {self.name!r} {self.id}>"

    def info(self) -> TaskInfo | None:
        """The task's record now, or None if there is none (never here, or expired)."""
        return self._queue.broker.info(self.id)

    async def ainfo(self) -> TaskInfo | None:
        """Async twin of :meth:`info`."""
        return await self._queue.broker.ainfo(self.id)

    def status(self) -> TaskState:
        """The task's state now (``unknown`` when there is no record)."""
        found = self.info()
        return TaskState.UNKNOWN if found is None else found.state

    async def astatus(self) -> TaskState:
        """Async twin of :meth:`status`."""
        found = await self.ainfo()
        return TaskState.UNKNOWN if found is None else found.state

    def result(self, timeout: float | None = None) -> R:
        """Wait up to ``timeout`` seconds (None: forever) and return the task's result.

        Raises:
            TaskFailed: it ended in the dead-letter queue (``error`` says why).
            TaskCancelled: it was cancelled before it ran.
            ResultTimeout: it had not finished in time (also a ``TimeoutError``).
            TaskNotFound: there is no record of it (``worker.result_ttl`` passed).
        """
        found = self._queue.broker.wait_finished(self.id, _FOREVER if timeout is None else timeout)
        return self._outcome(found, timeout)

    async def aresult(self, timeout: float | None = None) -> R:
        """Async twin of :meth:`result`; polls the record with a growing pause."""
        deadline = time.monotonic() + (_FOREVER if timeout is None else timeout)
        pause = 0.002
        while True:
            found = await self.ainfo()
            if found is None or found.state.finished or time.monotonic() >= deadline:
                return self._outcome(found, timeout)
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.1)

    def cancel(self) -> bool:
        """Cancel the task if it is still waiting; False if it already started or ended."""
        return self._queue.broker.cancel(self.id)

    async def acancel(self) -> bool:
        """Async twin of :meth:`cancel`."""
        return await self._queue.broker.acancel(self.id)

    def _outcome(self, found: TaskInfo | None, timeout: float | None) -> R:
        if found is None:
            raise TaskNotFound(
                f"no record of task {self.name!r} ({self.id}): never enqueued on this "
                "broker, or its record expired (worker.result_ttl)"
            )
        if found.state is TaskState.SUCCEEDED:
            return self._decode(found.result_json)
        if found.state is TaskState.DEAD:
            raise TaskFailed(self.id, self.name, found.error, found.attempt)
        if found.state is TaskState.CANCELLED:
            raise TaskCancelled(f"task {self.name!r} ({self.id}) was cancelled before it ran")
        waited = f" after {timeout:g}s" if timeout is not None else ""
        raise ResultTimeout(f"task {self.name!r} ({self.id}) is still {found.state.value}{waited}")

    def _decode(self, text: str | None) -> R:
        if text is None:
            return None  # type: ignore[return-value]  # a task whose result was not kept
        task = self._task
        if task is None and self.name in self._queue.registry:
            task = self._queue.registry.get(self.name)
        if task is not None:
            return task.decode_result(text)
        value: R = json.loads(text)
        return value


class TaskQueue:
    """Enqueue tasks on a :class:`~dtpyfw.worker.Broker` and operate its queues."""

    def __init__(
        self,
        broker: Broker,
        settings: WorkerSettings | None = None,
        registry: TaskRegistry | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings or WorkerSettings()
        self.registry = registry if registry is not None else default_registry
        #: The in-process worker of the threads/asyncio strategies, started by the container.
        self.embedded: Worker | None = None

    def __repr__(self) -> str:
        return f"<TaskQueue {self.settings.strategy} {self.broker!r}>"

    # -- enqueueing ----------------------------------------------------------------------
    def enqueue(
        self,
        task: Task[Any, R] | str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: PriorityLike | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> TaskHandle[R]:
        """Enqueue a call of ``task`` (a Task, or a task name known to the workers).

        ``delay`` (seconds or timedelta) or ``eta`` (an aware datetime) hold it
        back; ``queue`` and ``priority`` override the task's. A task given by a
        name this process does not know is sent with its arguments unvalidated.
        """
        message, seconds, found = self.message(
            task,
            args,
            kwargs,
            queue=queue,
            priority=priority,
            delay=delay,
            eta=eta,
            idempotency_key=idempotency_key,
        )
        self._attach_embedded()
        task_id, created = self.broker.enqueue(message, delay=seconds)
        return TaskHandle(self, task_id, message.type, found, created=created)

    async def aenqueue(
        self,
        task: Task[Any, R] | str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: PriorityLike | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> TaskHandle[R]:
        """Async twin of :meth:`enqueue`."""
        message, seconds, found = self.message(
            task,
            args,
            kwargs,
            queue=queue,
            priority=priority,
            delay=delay,
            eta=eta,
            idempotency_key=idempotency_key,
        )
        self._attach_embedded()
        task_id, created = await self.broker.aenqueue(message, delay=seconds)
        return TaskHandle(self, task_id, message.type, found, created=created)

    def enqueue_many(
        self,
        task: Task[Any, R] | str,
        calls: Sequence[Sequence[Any] | Mapping[str, Any]],
        *,
        queue: str | None = None,
        priority: PriorityLike | None = None,
        delay: float | timedelta | None = None,
    ) -> list[TaskHandle[R]]:
        """Enqueue one call of ``task`` per item of ``calls`` in as few round trips as possible.

        Each item is the positional arguments (a sequence) or the keyword arguments
        (a mapping) of one call. Every call is validated before any is stored.
        """
        built = [
            self.message(
                task,
                () if isinstance(call, Mapping) else call,
                call if isinstance(call, Mapping) else None,
                queue=queue,
                priority=priority,
                delay=delay,
            )
            for call in calls
        ]
        if not built:
            return []
        self._attach_embedded()
        seconds, found = built[0][1], built[0][2]
        stored = self.broker.enqueue_many([message for message, _s, _f in built], delay=seconds)
        return [
            TaskHandle(self, task_id, message.type, found, created=created)
            for (message, _s, _f), (task_id, created) in zip(built, stored, strict=True)
        ]

    def enqueue_tick(
        self,
        task: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        tick: Tick,
        queue: str | None = None,
        priority: int | None = None,
    ) -> TaskHandle[Any] | None:
        """Enqueue a schedule's tick unless it (or a later one) was enqueued already."""
        found: Task[Any, Any] | None
        message, _seconds, found = self.message(
            task,
            args,
            kwargs,
            queue=queue,
            priority=priority,
            schedule=tick.schedule,
            tick=datetime.fromtimestamp(tick.at_ms / 1000, UTC),
        )
        task_id, created = self.broker.enqueue(message, tick=tick)
        if not created:
            return None
        return TaskHandle(self, task_id, message.type, found)

    def message(
        self,
        task: Task[Any, R] | str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: PriorityLike | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        idempotency_key: str | None = None,
        schedule: str | None = None,
        tick: datetime | None = None,
    ) -> tuple[TaskMessage, float, Task[Any, R] | None]:
        """The envelope for a call, its delay in seconds, and the Task if known here."""
        found: Task[Any, Any] | None
        name: str
        if isinstance(task, str):
            name = task
            found = self.registry.get(name) if name in self.registry else None
        else:
            name, found = task.name, task
        if found is not None:
            data = found.encode_arguments(args, kwargs)
            key = found.key_for(args, kwargs, idempotency_key)
            default_priority = found.priority
            default_queue = found.queue
        else:
            data = _plain_arguments(name, args, kwargs)
            key, default_priority, default_queue = idempotency_key, None, None
        if priority is not None:
            chosen_priority = parse_priority(priority)
        elif default_priority is not None:
            chosen_priority = default_priority
        else:
            chosen_priority = int(Priority.NORMAL)
        context = current_context()
        message = TaskMessage(
            type=name,
            source=TASK_SOURCE,
            data=data,
            queue=queue or default_queue or self.settings.default_queue,
            priority=chosen_priority,
            idempotency_key=None if key is None else f"{name}:{key}",
            traceparent=context.traceparent(),
            correlation_id=context.correlation_id or context.request_id,
            schedule=schedule,
            tick=tick,
        )
        return message, _seconds(delay, eta), found

    def handle(self, task_id: str, task: Task[Any, R] | str | None = None) -> TaskHandle[R]:
        """A handle on a task enqueued earlier (by this process or another)."""
        if isinstance(task, Task):
            return TaskHandle(self, task_id, task.name, task)
        name = task
        if name is None:
            found = self.broker.info(task_id)
            name = found.name if found is not None else "?"
        return TaskHandle(self, task_id, name)

    # -- operating the queues -------------------------------------------------------------
    def info(self, task_id: str) -> TaskInfo | None:
        """The record of one task, if there is one."""
        return self.broker.info(task_id)

    def cancel(self, task_id: str) -> bool:
        """Cancel a waiting task; False if it already started or ended."""
        return self.broker.cancel(task_id)

    def dead_letters(
        self, queue: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[TaskInfo]:
        """Tasks in the dead-letter queue (of ``queue``, or of every queue), oldest first."""
        return self.broker.dead_letters(queue, limit, offset)

    def redrive(
        self,
        queue: str | None = None,
        ids: Sequence[str] | None = None,
        *,
        batch: int = 500,
        progress: Progress | None = None,
    ) -> int:
        """Send dead-lettered tasks back to their queues as attempt 1; how many went.

        With ``ids`` only those; else every dead task of ``queue`` (or of every
        queue). ``progress(done, total)`` is called after each batch.
        """
        if ids is not None:
            moved = 0
            chosen = list(ids)
            for start in range(0, len(chosen), batch):
                moved += self.broker.redrive(queue, chosen[start : start + batch], batch)
                if progress is not None:
                    progress(min(start + batch, len(chosen)), len(chosen))
            return moved
        names = [queue] if queue is not None else self.broker.queues()
        total = sum(self.broker.count(name, "dead") for name in names)
        moved = 0
        for name in names:
            while True:
                step = self.broker.redrive(name, None, batch)
                moved += step
                if progress is not None:
                    progress(moved, max(total, moved))
                if step < batch:
                    break
        return moved

    def purge(
        self,
        queue: str,
        target: PurgeTarget = "queued",
        *,
        batch: int = 500,
        progress: Progress | None = None,
    ) -> int:
        """Delete every task of ``queue`` that is ``target`` (queued, delayed or dead)."""
        total = self.broker.count(queue, target)
        removed = 0
        while True:
            step = self.broker.purge(queue, target, batch)
            removed += step
            if progress is not None:
                progress(removed, max(total, removed))
            if step < batch:
                return removed

    def stats(self) -> list[QueueStats]:
        """Counts per queue and priority: queued, delayed, running, succeeded, failed, ..."""
        return self.broker.stats()

    def workers(self) -> list[WorkerInfo]:
        """The workers whose heartbeat is fresh."""
        return self.broker.workers()

    def ping(self) -> None:
        """Raise when the broker cannot be reached."""
        self.broker.ping()

    async def aping(self) -> None:
        """Async twin of :meth:`ping`."""
        await self.broker.aping()

    def worker(self, **options: Any) -> Worker:
        """A :class:`~dtpyfw.worker.Worker` on this queue (options as Worker takes)."""
        from dtpyfw.worker._worker import Worker

        return Worker(self, **options)

    # -- binding and closing --------------------------------------------------------------
    @contextlib.contextmanager
    def bind(self) -> Iterator[TaskQueue]:
        """Make this the queue ``task.delay()`` uses inside the ``with`` block."""
        bind_queue(self)
        try:
            yield self
        finally:
            unbind_queue(self)

    def close(self) -> None:
        """Stop the embedded worker, close the broker's connections; twice is harmless.

        An embedded threads worker lets running tasks finish (``shutdown_timeout``);
        an embedded asyncio worker is cancelled (use :meth:`aclose` to let them finish).
        """
        embedded = self.embedded
        if embedded is not None and embedded.started:
            if embedded.pool == "threads":
                embedded.stop()
            else:
                embedded.cancel()
        self.broker.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`; an embedded asyncio worker finishes running tasks."""
        embedded = self.embedded
        if embedded is not None and embedded.started:
            if embedded.pool == "threads":
                await asyncio.to_thread(embedded.stop)
            else:
                await embedded.astop()
        await self.broker.aclose()

    def _attach_embedded(self) -> None:
        """Start an embedded asyncio worker on this thread's running loop, once."""
        embedded = self.embedded
        if embedded is None or embedded.started or embedded.pool != "asyncio":
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop here: it starts with the first enqueue made on one
        embedded.attach()


def _plain_arguments(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None
) -> dict[str, Any]:
    try:
        return {
            "args": to_jsonable_python(list(args)),
            "kwargs": to_jsonable_python(dict(kwargs or {})),
        }
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise InvalidTaskArguments(
            f"task {name!r}: arguments are not JSON-serialisable: {exc}"
        ) from None


def _seconds(delay: float | timedelta | None, eta: datetime | None) -> float:
    if delay is not None and eta is not None:
        raise InvalidTaskArguments("give delay= or eta=, not both")
    if eta is not None:
        if eta.tzinfo is None:
            raise InvalidTaskArguments(f"eta must be an aware datetime, not naive {eta!r}")
        return max(0.0, (eta - datetime.now(UTC)).total_seconds())
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if delay is not None and delay < 0:
        raise InvalidTaskArguments(f"delay must not be negative, not {delay!r}")
    return float(delay or 0.0)
