"""The ``inline`` strategy: a task runs inside ``delay()``, before it returns. For tests.

Everything else behaves as in the other strategies (validation, results,
retries, dead letters, the soft time limit), with three simplifications
that keep a test fast and deterministic: retries run at once without their
backoff, ``delay=``/``eta=`` are ignored (the task runs now), and the hard
time limit is not enforced (there is no other thread to give up on).
``adelay()`` awaits an async task on the caller's loop; ``delay()`` runs it
with ``asyncio.run`` (in a helper thread if this thread already runs a loop).
"""

from __future__ import annotations

__all__ = ["InlineBroker"]

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from dtpyfw.worker._broker import Tick
from dtpyfw.worker._execute import Executor
from dtpyfw.worker._limits import Watchdog, run_in_new_thread
from dtpyfw.worker._memory import Clock, MemoryBroker
from dtpyfw.worker._records import Outcome, TaskMessage
from dtpyfw.worker._settings import WorkerSettings
from dtpyfw.worker._task import TaskRegistry, default_registry

T = TypeVar("T")
_CONSUMER = "inline"


class InlineBroker(MemoryBroker):
    """A MemoryBroker that runs each task as it is enqueued; see the module docstring."""

    def __init__(
        self,
        settings: WorkerSettings | None = None,
        registry: TaskRegistry | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        if clock is None:
            super().__init__(settings)
        else:
            super().__init__(settings, clock=clock)
        self.executor = Executor(
            registry if registry is not None else default_registry, self.settings
        )
        self._watchdog = Watchdog(name="dtpyfw-worker-inline-watchdog")

    def enqueue(
        self, message: TaskMessage, *, delay: float = 0.0, tick: Tick | None = None
    ) -> tuple[str, bool]:
        """Store the task, then run it (and its retries) here before returning."""
        task_id, created = super().enqueue(message, tick=tick)
        if created:
            self.run(task_id)
        return task_id, created

    async def aenqueue(
        self, message: TaskMessage, *, delay: float = 0.0, tick: Tick | None = None
    ) -> tuple[str, bool]:
        """Store the task, then run it here, awaiting an async task on this loop."""
        task_id, created = super().enqueue(message, tick=tick)
        if created:
            await self.arun(task_id)
        return task_id, created

    def run(self, task_id: str) -> None:
        """Run a stored task now, retrying at once until it succeeds or is dead."""
        while True:
            delivery = self.take(task_id)
            if delivery is None:
                return
            prepared = self.executor.prepare(delivery)
            if isinstance(prepared, Outcome):
                outcome = prepared
            elif prepared.task.is_async:
                outcome = _run_coroutine(self.executor.run_async(prepared, self._watchdog))
            else:
                outcome = self.executor.run_sync(prepared, self._watchdog)
            self.exchange([(delivery, outcome)], (), 0, _CONSUMER)
            if outcome.kind != "retry":
                return

    async def arun(self, task_id: str) -> None:
        """Async twin of :meth:`run`."""
        while True:
            delivery = self.take(task_id)
            if delivery is None:
                return
            prepared = self.executor.prepare(delivery)
            if isinstance(prepared, Outcome):
                outcome = prepared
            elif prepared.task.is_async:
                outcome = await self.executor.run_async(prepared, self._watchdog)
            else:
                outcome = self.executor.run_sync(prepared, self._watchdog)
            self.exchange([(delivery, outcome)], (), 0, _CONSUMER)
            if outcome.kind != "retry":
                return

    def close(self) -> None:
        """Stop the soft-limit timer thread."""
        self._watchdog.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self._watchdog.close()


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    return run_in_new_thread(lambda: asyncio.run(coro), name="dtpyfw-worker-inline").result()
