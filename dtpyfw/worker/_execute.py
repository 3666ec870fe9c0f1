"""Running one delivery: find the task, decode its arguments, call it, judge the outcome.

Nothing a task does (or a bad message carries) escapes as an exception: every
attempt ends in an :class:`~dtpyfw.worker._records.Outcome` the broker
records. An unknown task name, arguments that fail validation and a result
that cannot be serialised go straight to the dead-letter queue (retrying
cannot help them); any other exception is retried under the task's
:class:`~dtpyfw.core.retry.RetryPolicy` while tries remain and it is one of
``retry_on``, then dead-lettered.

While a task runs, :func:`~dtpyfw.worker.current_task` describes it and the
message's ``correlation_id`` and trace are bound in :mod:`dtpyfw.core.context`.
"""

from __future__ import annotations

__all__ = ["Executor", "Prepared"]

import asyncio
import contextlib
import logging
import random
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dtpyfw.core.context import bind_context, parse_traceparent
from dtpyfw.core.retry import RetryPolicy
from dtpyfw.worker._errors import (
    HardTimeLimitExceeded,
    InvalidTaskArguments,
    InvalidTaskResult,
    SoftTimeLimitExceeded,
    TaskNotFound,
    WorkerError,
)
from dtpyfw.worker._limits import (
    Interruptible,
    ThreadInterrupt,
    Watchdog,
    run_in_new_thread,
)
from dtpyfw.worker._records import Delivery, Outcome
from dtpyfw.worker._settings import WorkerSettings
from dtpyfw.worker._task import Task, TaskContext, TaskRegistry, _current_task

logger = logging.getLogger("dtpyfw.worker")
_NOT_RETRIED = (TaskNotFound, InvalidTaskArguments, InvalidTaskResult)
_TRACEBACK_LIMIT = 8000


@dataclass(frozen=True, slots=True)
class Prepared:
    """A delivery whose task was found and whose arguments decoded."""

    delivery: Delivery
    task: Task[Any, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    retry: RetryPolicy
    soft_timeout: float | None
    timeout: float | None


class Executor:
    """Turns deliveries into outcomes for one registry and settings."""

    def __init__(self, registry: TaskRegistry, settings: WorkerSettings) -> None:
        self.registry = registry
        self.settings = settings

    # -- the steps -----------------------------------------------------------------------
    def prepare(self, delivery: Delivery) -> Prepared | Outcome:
        """The task and its decoded arguments, or the dead outcome saying why not."""
        message = delivery.message
        if delivery.problem is not None:
            return self._dead(delivery, WorkerError(delivery.problem))
        try:
            task = self.registry.get(message.type)
            args, kwargs = task.decode_arguments(message.data)
        except (TaskNotFound, InvalidTaskArguments) as exc:
            return self._dead(delivery, exc)
        return Prepared(
            delivery=delivery,
            task=task,
            args=args,
            kwargs=kwargs,
            retry=task.retry or self.settings.retry,
            soft_timeout=task.soft_timeout or self.settings.soft_timeout,
            timeout=task.timeout or self.settings.timeout,
        )

    def succeeded(self, prepared: Prepared, value: Any) -> Outcome:
        """The outcome of a returned value: its JSON, or dead if it cannot be stored."""
        try:
            result = prepared.task.encode_result(value)
        except InvalidTaskResult as exc:
            return self._dead(prepared.delivery, exc)
        logger.debug(
            "task %s %s succeeded",
            prepared.task.name,
            prepared.delivery.id,
            extra=_extra(prepared.delivery),
        )
        return Outcome("ok", result=result)

    def failed(self, prepared: Prepared, exc: BaseException) -> Outcome:
        """Retry (with backoff and jitter) while tries remain, else dead-letter."""
        delivery = prepared.delivery
        policy = prepared.retry
        retryable = (
            isinstance(exc, policy.retry_on)
            and not isinstance(exc, _NOT_RETRIED)
            and delivery.attempt < policy.attempts
        )
        if not retryable:
            return self._dead(delivery, exc)
        delay = policy.delay_for(delivery.attempt)
        if policy.jitter:
            delay += random.uniform(0, policy.jitter)  # noqa: S311 - jitter, not secrecy
        logger.warning(
            "task %s %s failed (attempt %d of %d), retrying in %.2fs: %s: %s",
            delivery.message.type,
            delivery.id,
            delivery.attempt,
            policy.attempts,
            delay,
            type(exc).__name__,
            exc,
            extra=_extra(delivery),
        )
        return Outcome("retry", error=_describe(exc), traceback=_traceback(exc), delay=delay)

    def hard_limit(self, prepared: Prepared) -> Outcome:
        """The outcome of a run abandoned at its hard time limit."""
        exc = HardTimeLimitExceeded(
            f"task {prepared.task.name!r} still ran after its hard time limit "
            f"of {prepared.timeout:g}s; the worker abandoned it"
        )
        return self.failed(prepared, exc)

    # -- calling -------------------------------------------------------------------------
    def call(self, prepared: Prepared) -> Any:
        """Call a sync task in this thread, inside its context."""
        with self._context(prepared):
            return prepared.task.fn(*prepared.args, **prepared.kwargs)

    async def acall(self, prepared: Prepared) -> Any:
        """Await an async task, inside its context."""
        with self._context(prepared):
            return await prepared.task.fn(*prepared.args, **prepared.kwargs)

    def run_sync(
        self,
        prepared: Prepared,
        watchdog: Watchdog | None,
        *,
        on_start: Callable[[ThreadInterrupt], object] | None = None,
        on_hard_limit: Callable[[ThreadInterrupt], None] | None = None,
    ) -> Outcome:
        """Run a sync task in this thread under its soft limit; arm the hard limit.

        ``on_start`` gets the thread's interrupt guard before the task starts.
        ``on_hard_limit`` runs on the watchdog thread when the hard limit passes
        (the caller abandons this thread there); without it no hard limit applies.
        """
        guard = ThreadInterrupt()
        if on_start is not None:
            on_start(guard)
        timers = []
        if watchdog is not None and prepared.soft_timeout is not None:
            timers.append(
                watchdog.call_later(
                    prepared.soft_timeout, lambda: guard.interrupt(SoftTimeLimitExceeded)
                )
            )
        if watchdog is not None and on_hard_limit is not None and prepared.timeout is not None:
            timers.append(watchdog.call_later(prepared.timeout, lambda: on_hard_limit(guard)))
        try:
            try:
                try:
                    value = self.call(prepared)
                finally:
                    guard.close()
            except BaseException as exc:
                return self.failed(prepared, exc)
            return self.succeeded(prepared, value)
        finally:
            for timer in timers:
                timer.cancel()

    async def run_async(self, prepared: Prepared, watchdog: Watchdog) -> Outcome:
        """Run a task on the running loop under both limits (a sync one in its own thread)."""
        if not prepared.task.is_async:
            return await self._run_sync_in_thread(prepared, watchdog)
        runner = Interruptible(self.acall(prepared))
        task = runner.start()
        loop = asyncio.get_running_loop()
        soft = None
        if prepared.soft_timeout is not None:
            soft = loop.call_later(prepared.soft_timeout, runner.interrupt, SoftTimeLimitExceeded())
        try:
            done, _pending = await asyncio.wait({task}, timeout=prepared.timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            if soft is not None:
                soft.cancel()
        if not done:
            task.cancel()
            task.add_done_callback(_retrieve)  # abandoned: its outcome is ignored
            return self.hard_limit(prepared)
        try:
            value = task.result()
        except BaseException as exc:
            return self.failed(prepared, exc)
        return self.succeeded(prepared, value)

    async def _run_sync_in_thread(self, prepared: Prepared, watchdog: Watchdog) -> Outcome:
        guards: list[ThreadInterrupt] = []

        def body() -> Outcome:
            return self.run_sync(prepared, watchdog, on_start=guards.append)

        future = run_in_new_thread(body, name=f"dtpyfw-task-{prepared.task.name}")
        wrapped = asyncio.wrap_future(future)
        try:
            return await asyncio.wait_for(asyncio.shield(wrapped), prepared.timeout)
        except TimeoutError:
            for guard in guards:
                guard.interrupt(HardTimeLimitExceeded)
            wrapped.add_done_callback(_retrieve)
            return self.hard_limit(prepared)

    # -- helpers -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _context(self, prepared: Prepared) -> Iterator[None]:
        delivery = prepared.delivery
        message = delivery.message
        context = TaskContext(
            id=delivery.id,
            name=message.type,
            queue=message.queue,
            priority=message.priority,
            attempt=delivery.attempt,
            max_attempts=prepared.retry.attempts,
            schedule=message.schedule,
            tick=message.tick,
        )
        parent = parse_traceparent(message.traceparent)
        trace_id, span_id = parent if parent is not None else (None, None)
        token = _current_task.set(context)
        try:
            with bind_context(
                correlation_id=message.correlation_id, trace_id=trace_id, span_id=span_id
            ):
                yield
        finally:
            _current_task.reset(token)

    def _dead(self, delivery: Delivery, exc: BaseException) -> Outcome:
        logger.error(
            "task %s %s failed on attempt %d and goes to the dead-letter queue: %s: %s",
            delivery.message.type,
            delivery.id,
            delivery.attempt,
            type(exc).__name__,
            exc,
            extra=_extra(delivery),
        )
        return Outcome("dead", error=_describe(exc), traceback=_traceback(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _traceback(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return text[-_TRACEBACK_LIMIT:]


def _extra(delivery: Delivery) -> dict[str, Any]:
    return {
        "task_id": delivery.id,
        "task_name": delivery.message.type,
        "queue": delivery.message.queue,
        "priority": delivery.message.priority,
        "attempt": delivery.attempt,
    }


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
