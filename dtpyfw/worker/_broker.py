"""The broker protocol: where tasks wait, who takes them, and how a worker picks the next one.

A :class:`Broker` stores tasks and their records; a worker asks it for work
with :meth:`Broker.exchange`, which records the outcomes of the tasks it
finished and hands it new ones in one call (one round trip for Redis).

**Picking.** Among the ready tasks of the queues a worker serves, the highest
priority goes first, oldest first within a priority. Starvation is bounded by
one rule, the same in every broker (:func:`choose`): a pick *passes over* a
task when an older task of lower priority is waiting; after
``starvation_limit`` picks in a row have passed over one, the next pick takes
the oldest waiting task whatever its priority, and the count starts again. So
under a constant flood of high-priority work, the oldest low-priority task
runs at least once every ``starvation_limit + 1`` picks of each worker.
``starvation_limit: 0`` drains strictly by priority.
"""

from __future__ import annotations

__all__ = ["Broker", "Head", "Tick", "choose"]

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from dtpyfw.worker._records import (
    Delivery,
    Outcome,
    QueueStats,
    TaskInfo,
    TaskMessage,
    WorkerInfo,
)

#: What ``purge`` can empty.
PurgeTarget = Literal["queued", "delayed", "dead"]


@dataclass(frozen=True, slots=True)
class Tick:
    """A schedule's tick: enqueue only if no later-or-equal tick of it was enqueued before.

    ``at_ms`` is the tick time in epoch milliseconds. Comparing with the last
    tick recorded (not merely locking this one) keeps a late or restarted
    replica from firing a tick that another already fired, however long ago.
    """

    schedule: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class Head:
    """The oldest ready task of one (queue, priority): what :func:`choose` compares."""

    priority: int
    seq: int
    key: Hashable


def choose(heads: Iterable[Head], skips: int, limit: int) -> tuple[Head | None, int]:
    """The next task to take among ``heads``, and the new count of passed-over picks.

    See the module docstring for the rule; the Redis broker's Lua mirrors it.
    """
    best: Head | None = None
    oldest: Head | None = None
    for head in heads:
        if (
            best is None
            or head.priority > best.priority
            or (head.priority == best.priority and head.seq < best.seq)
        ):
            best = head
        if oldest is None or head.seq < oldest.seq:
            oldest = head
    if best is None or oldest is None:
        return None, skips
    if oldest.seq < best.seq:  # an older task of lower priority is waiting
        if limit > 0 and skips >= limit:
            return oldest, 0
        return best, skips + 1
    return best, 0


@runtime_checkable
class Broker(Protocol):
    """Stores tasks and their records; every strategy implements it.

    Producer calls have async twins; worker calls are sync (workers call them
    from their own threads). Times are seconds; records keep epoch milliseconds.
    """

    # -- producers ---------------------------------------------------------------------
    def enqueue(
        self, message: TaskMessage, *, delay: float = 0.0, tick: Tick | None = None
    ) -> tuple[str, bool]:
        """Store ``message``; ``(task id, created)``.

        ``created`` is False when its idempotency key (or ``tick``) was seen
        already: the id is then the earlier task's (empty for a tick).
        """
        ...

    async def aenqueue(
        self, message: TaskMessage, *, delay: float = 0.0, tick: Tick | None = None
    ) -> tuple[str, bool]:
        """Async twin of :meth:`enqueue`."""
        ...

    def enqueue_many(
        self, messages: Sequence[TaskMessage], *, delay: float = 0.0
    ) -> list[tuple[str, bool]]:
        """:meth:`enqueue` for many messages at once (one round trip per batch for Redis)."""
        ...

    def info(self, task_id: str) -> TaskInfo | None:
        """The task's record, or None when there is none (never enqueued, or expired)."""
        ...

    async def ainfo(self, task_id: str) -> TaskInfo | None:
        """Async twin of :meth:`info`."""
        ...

    def wait_finished(self, task_id: str, timeout: float) -> TaskInfo | None:
        """Block until the task has finished (or ``timeout``); its record, if any."""
        ...

    def cancel(self, task_id: str) -> bool:
        """Cancel a task still waiting (queued or delayed); False if it is not waiting."""
        ...

    async def acancel(self, task_id: str) -> bool:
        """Async twin of :meth:`cancel`."""
        ...

    # -- workers -----------------------------------------------------------------------
    def exchange(
        self,
        finished: Sequence[tuple[Delivery, Outcome]],
        queues: Sequence[str],
        count: int,
        consumer: str,
    ) -> list[Delivery]:
        """Record ``finished`` outcomes, then take up to ``count`` tasks for ``consumer``.

        An outcome whose delivery is stale (the task was redelivered since) is ignored.
        """
        ...

    def extend(self, deliveries: Sequence[Delivery]) -> None:
        """Renew the leases of tasks still running, so they are not redelivered."""
        ...

    def wait(self, queues: Sequence[str], timeout: float, consumer: str) -> None:
        """Block until work may be ready in ``queues``, :meth:`wake` or ``timeout``."""
        ...

    def wake(self, consumer: str, count: int) -> None:
        """Wake up to ``count`` of ``consumer``'s threads blocked in :meth:`wait`."""
        ...

    def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """Record that a worker is alive, for ``ttl`` seconds."""
        ...

    def forget_worker(self, worker_id: str) -> None:
        """Remove a stopped worker's heartbeat."""
        ...

    def last_tick(self, schedule: str) -> int | None:
        """The last tick (epoch ms) enqueued for ``schedule``, if any."""
        ...

    # -- operations --------------------------------------------------------------------
    def workers(self) -> list[WorkerInfo]:
        """The workers whose heartbeat is fresh."""
        ...

    def stats(self) -> list[QueueStats]:
        """Counts per queue and priority (rows with nothing in them are left out)."""
        ...

    def dead_letters(self, queue: str | None, limit: int, offset: int = 0) -> list[TaskInfo]:
        """Tasks in the dead-letter queue (of ``queue`` or every queue), oldest first."""
        ...

    def count(self, queue: str, target: PurgeTarget) -> int:
        """How many tasks of ``queue`` are ``target`` now."""
        ...

    def redrive(self, queue: str | None, ids: Sequence[str] | None, limit: int) -> int:
        """Move up to ``limit`` dead tasks back to their queue as attempt 1; how many moved."""
        ...

    def purge(self, queue: str, target: PurgeTarget, limit: int) -> int:
        """Delete up to ``limit`` tasks of ``queue`` that are ``target``; how many went."""
        ...

    def queues(self) -> list[str]:
        """Every queue a task was ever enqueued on."""
        ...

    def ping(self) -> None:
        """Raise when the broker cannot be reached."""
        ...

    async def aping(self) -> None:
        """Async twin of :meth:`ping`."""
        ...

    def close(self) -> None:
        """Release connections; closing twice is harmless."""
        ...

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        ...
