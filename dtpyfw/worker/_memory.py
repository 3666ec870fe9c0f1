"""The in-process broker behind the ``threads``, ``asyncio`` and ``inline`` strategies.

Tasks wait in one heap per (queue, priority), delayed ones in a heap per
queue keyed by their eta. Everything lives in this process: the queue is
lost when it stops, and only this process's workers take from it. Records of
finished tasks are kept ``result_ttl`` seconds.
"""

from __future__ import annotations

__all__ = ["MemoryBroker"]

import heapq
import itertools
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dtpyfw.worker._broker import Head, PurgeTarget, Tick, choose
from dtpyfw.worker._priority import PRIORITY_LEVELS
from dtpyfw.worker._records import (
    Delivery,
    Outcome,
    QueueStats,
    TaskInfo,
    TaskMessage,
    TaskState,
    WorkerInfo,
    from_ms,
)
from dtpyfw.worker._settings import WorkerSettings

Clock = Callable[[], float]


@dataclass(eq=False, slots=True)
class _Job:
    id: str
    message: TaskMessage
    raw: str
    state: TaskState
    seq: int
    enqueued_ms: int
    attempt: int = 1
    deliveries: int = 0
    eta_ms: int = 0
    started_ms: int = 0
    finished_ms: int = 0
    error: str | None = None
    traceback: str | None = None
    result: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def info(self) -> TaskInfo:
        message = self.message
        return TaskInfo(
            id=self.id,
            name=message.type,
            queue=message.queue,
            priority=message.priority,
            state=self.state,
            attempt=self.attempt,
            enqueued_at=from_ms(self.enqueued_ms),
            started_at=from_ms(self.started_ms),
            finished_at=from_ms(self.finished_ms),
            error=self.error,
            traceback=self.traceback,
            result_json=self.result,
            args=message.args,
            kwargs=message.kwargs,
        )


class MemoryBroker:
    """Tasks in this process's memory, thread-safe; see the module docstring.

    ``clock`` (epoch seconds) is there for tests that move time by hand.
    """

    def __init__(self, settings: WorkerSettings | None = None, *, clock: Clock = time.time) -> None:
        self.settings = settings or WorkerSettings()
        self.clock = clock
        self._cond = threading.Condition()
        self._seq = itertools.count(1)
        self._jobs: dict[str, _Job] = {}
        self._ready: dict[tuple[str, int], list[tuple[int, str]]] = defaultdict(list)
        self._delayed: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        self._running: dict[str, _Job] = {}
        self._dead: dict[str, dict[str, None]] = defaultdict(dict)
        self._finished: deque[tuple[int, str]] = deque()
        self._counts: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._idempotency: dict[str, tuple[str, int]] = {}
        self._ticks: dict[str, int] = {}
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}
        self._skips: dict[str, int] = defaultdict(int)
        self._listeners: list[Callable[[], None]] = []
        self._queues: dict[str, None] = {}
        self._wakes: dict[str, int] = defaultdict(int)

    def __repr__(self) -> str:
        return f"<MemoryBroker {len(self._jobs)} record(s), {len(self._running)} running>"

    # -- producers ---------------------------------------------------------------------
    def enqueue(
        self, message: TaskMessage, *, delay: float = 0.0, tick: Tick | None = None
    ) -> tuple[str, bool]:
        """See :meth:`Broker.enqueue`."""
        raw = message.encode()
        with self._cond:
            now = self._now()
            self._expire(now)
            if tick is not None:
                if self._ticks.get(tick.schedule, -1) >= tick.at_ms:
                    return "", False
                self._ticks[tick.schedule] = tick.at_ms
            key = message.idempotency_key
            if key is not None:
                known = self._idempotency.get(key)
                if known is not None and known[1] > now:
                    return known[0], False
                ttl = round(self.settings.idempotency_ttl * 1000)
                self._idempotency[key] = (message.id, now + ttl)
            job = _Job(
                id=message.id,
                message=message,
                raw=raw,
                state=TaskState.QUEUED,
                seq=next(self._seq),
                enqueued_ms=now,
            )
            self._jobs[job.id] = job
            self._queues.setdefault(message.queue, None)
            self._count(job, "enqueued")
            if delay > 0:
                self._delay(job, now + round(delay * 1000))
            else:
                self._make_ready(job)
        self._notify()
        return job.id, True

    async def aenqueue(
        self, message: TaskMessage, *, delay: float = 0.0, tick: Tick | None = None
    ) -> tuple[str, bool]:
        """Async twin of :meth:`enqueue` (memory never blocks)."""
        return self.enqueue(message, delay=delay, tick=tick)

    def enqueue_many(
        self, messages: Sequence[TaskMessage], *, delay: float = 0.0
    ) -> list[tuple[str, bool]]:
        """See :meth:`Broker.enqueue_many`."""
        return [self.enqueue(message, delay=delay) for message in messages]

    def info(self, task_id: str) -> TaskInfo | None:
        """See :meth:`Broker.info`."""
        with self._cond:
            self._expire(self._now())
            job = self._jobs.get(task_id)
            return None if job is None else job.info()

    async def ainfo(self, task_id: str) -> TaskInfo | None:
        """Async twin of :meth:`info`."""
        return self.info(task_id)

    def wait_finished(self, task_id: str, timeout: float) -> TaskInfo | None:
        """See :meth:`Broker.wait_finished`."""
        with self._cond:
            job = self._jobs.get(task_id)
        if job is None:
            return None
        job.done.wait(timeout)
        return job.info()

    def cancel(self, task_id: str) -> bool:
        """See :meth:`Broker.cancel`."""
        with self._cond:
            job = self._jobs.get(task_id)
            if job is None or job.state not in (TaskState.QUEUED, TaskState.DELAYED):
                return False
            if job.state is TaskState.DELAYED:
                self._gauge(job, "delayed", -1)
            # Heap entries of a job that is no longer queued are skipped when reached.
            self._count(job, "cancelled")
            self._finish_record(job, TaskState.CANCELLED, self._now())
            return True

    async def acancel(self, task_id: str) -> bool:
        """Async twin of :meth:`cancel`."""
        return self.cancel(task_id)

    # -- workers -----------------------------------------------------------------------
    def exchange(
        self,
        finished: Sequence[tuple[Delivery, Outcome]],
        queues: Sequence[str],
        count: int,
        consumer: str,
    ) -> list[Delivery]:
        """See :meth:`Broker.exchange`."""
        taken: list[Delivery] = []
        notify = False
        with self._cond:
            now = self._now()
            for delivery, outcome in finished:
                notify = self._finish(delivery, outcome, now) or notify
            self._promote(queues, now)
            limit = self.settings.starvation_limit
            for _ in range(count):
                head, self._skips[consumer] = choose(
                    self._heads(queues), self._skips[consumer], limit
                )
                if head is None:
                    break
                taken.append(self._take(head.key, now))  # type: ignore[arg-type]
        if notify:
            self._notify()
        return taken

    def take(self, task_id: str) -> Delivery | None:
        """Take one particular task now, whatever its queue, priority or eta (inline runs)."""
        with self._cond:
            job = self._jobs.get(task_id)
            if job is None or job.state not in (TaskState.QUEUED, TaskState.DELAYED):
                return None
            if job.state is TaskState.DELAYED:
                self._gauge(job, "delayed", -1)
            job.state = TaskState.QUEUED
            return self._claim(job, self._now())

    def extend(self, deliveries: Sequence[Delivery]) -> None:
        """In one process nothing is redelivered, so there is no lease to renew."""

    def wait(self, queues: Sequence[str], timeout: float, consumer: str) -> None:
        """See :meth:`Broker.wait`."""
        with self._cond:
            if self._wakes[consumer] > 0:
                self._wakes[consumer] -= 1
                return
            now = self._now()
            if any(self._head(queue, p) is not None for queue in queues for p in PRIORITY_LEVELS):
                return
            due = self._next_due(queues)
            if due is not None:
                timeout = min(timeout, max(0.0, (due - now) / 1000))
            self._cond.wait(timeout)
            if self._wakes[consumer] > 0:
                self._wakes[consumer] -= 1

    def seconds_until_due(self, queues: Sequence[str]) -> float | None:
        """Seconds until the next delayed task of ``queues`` is due, if any is waiting."""
        with self._cond:
            due = self._next_due(queues)
            return None if due is None else max(0.0, (due - self._now()) / 1000)

    def wake(self, consumer: str, count: int) -> None:
        """See :meth:`Broker.wake`."""
        with self._cond:
            self._wakes[consumer] += count
            self._cond.notify_all()
        self._call_listeners()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread) whenever work may have become ready."""
        with self._cond:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        with self._cond:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """See :meth:`Broker.heartbeat`."""
        with self._cond:
            self._workers[info.id] = (info, time.monotonic() + ttl)

    def forget_worker(self, worker_id: str) -> None:
        """See :meth:`Broker.forget_worker`."""
        with self._cond:
            self._workers.pop(worker_id, None)
            self._skips.pop(worker_id, None)
            self._wakes.pop(worker_id, None)

    def last_tick(self, schedule: str) -> int | None:
        """See :meth:`Broker.last_tick`."""
        with self._cond:
            return self._ticks.get(schedule)

    # -- operations --------------------------------------------------------------------
    def workers(self) -> list[WorkerInfo]:
        """See :meth:`Broker.workers`."""
        now = time.monotonic()
        with self._cond:
            return [info for info, until in self._workers.values() if until > now]

    def stats(self) -> list[QueueStats]:
        """See :meth:`Broker.stats`."""
        with self._cond:
            rows = []
            for queue in self._queues:
                for priority in PRIORITY_LEVELS:
                    counts = self._counts.get((queue, priority), {})
                    queued = sum(
                        1
                        for seq, task_id in self._ready.get((queue, priority), ())
                        if self._live(seq, task_id)
                    )
                    if not queued and not any(counts.values()):
                        continue
                    rows.append(QueueStats(queue=queue, priority=priority, queued=queued, **counts))
            return rows

    def dead_letters(self, queue: str | None, limit: int, offset: int = 0) -> list[TaskInfo]:
        """See :meth:`Broker.dead_letters`."""
        with self._cond:
            ids = [
                task_id
                for name in ([queue] if queue is not None else list(self._dead))
                for task_id in self._dead.get(name, {})
            ]
            return [self._jobs[task_id].info() for task_id in ids[offset : offset + limit]]

    def count(self, queue: str, target: PurgeTarget) -> int:
        """See :meth:`Broker.count`."""
        with self._cond:
            return len(self._ids(queue, target))

    def redrive(self, queue: str | None, ids: Sequence[str] | None, limit: int) -> int:
        """See :meth:`Broker.redrive`."""
        moved = 0
        with self._cond:
            if ids is None:
                names = [queue] if queue is not None else list(self._dead)
                chosen = [task_id for name in names for task_id in self._dead.get(name, {})]
            else:
                chosen = list(ids)
            for task_id in chosen[:limit]:
                job = self._jobs.get(task_id)
                if job is None or job.state is not TaskState.DEAD:
                    continue
                if queue is not None and job.message.queue != queue:
                    continue
                self._dead[job.message.queue].pop(task_id, None)
                self._gauge(job, "dead", -1)
                self._count(job, "redriven")
                job.attempt = 1
                job.done.clear()
                job.finished_ms = 0
                job.seq = next(self._seq)
                self._make_ready(job)
                moved += 1
        if moved:
            self._notify()
        return moved

    def purge(self, queue: str, target: PurgeTarget, limit: int) -> int:
        """See :meth:`Broker.purge`."""
        with self._cond:
            ids = self._ids(queue, target)[:limit]
            for task_id in ids:
                job = self._jobs.pop(task_id)
                if target == "dead":
                    self._dead[queue].pop(task_id, None)
                    self._gauge(job, "dead", -1)
                elif target == "delayed":
                    self._gauge(job, "delayed", -1)
                job.state = TaskState.UNKNOWN
                job.done.set()
            return len(ids)

    def queues(self) -> list[str]:
        """See :meth:`Broker.queues`."""
        with self._cond:
            return list(self._queues)

    def ping(self) -> None:
        """Memory is always reachable."""

    async def aping(self) -> None:
        """Memory is always reachable."""

    def close(self) -> None:
        """Nothing to release."""

    async def aclose(self) -> None:
        """Nothing to release."""

    # -- internals (called with the condition held) -------------------------------------
    def _now(self) -> int:
        return round(self.clock() * 1000)

    def _make_ready(self, job: _Job) -> None:
        job.state = TaskState.QUEUED
        heapq.heappush(self._ready[(job.message.queue, job.message.priority)], (job.seq, job.id))

    def _delay(self, job: _Job, eta_ms: int) -> None:
        job.state = TaskState.DELAYED
        job.eta_ms = eta_ms
        heapq.heappush(self._delayed[job.message.queue], (eta_ms, job.seq, job.id))
        self._gauge(job, "delayed", 1)

    def _live(self, seq: int, task_id: str) -> bool:
        job = self._jobs.get(task_id)
        return job is not None and job.state is TaskState.QUEUED and job.seq == seq

    def _head(self, queue: str, priority: int) -> tuple[int, str] | None:
        heap = self._ready.get((queue, priority))
        while heap:
            seq, task_id = heap[0]
            if self._live(seq, task_id):
                return seq, task_id
            heapq.heappop(heap)
        return None

    def _heads(self, queues: Sequence[str]) -> list[Head]:
        heads = []
        for queue in queues:
            for priority in PRIORITY_LEVELS:
                head = self._head(queue, priority)
                if head is not None:
                    heads.append(Head(priority, head[0], head[1]))
        return heads

    def _promote(self, queues: Sequence[str], now: int) -> None:
        for queue in queues:
            heap = self._delayed.get(queue)
            while heap and heap[0][0] <= now:
                _eta, seq, task_id = heapq.heappop(heap)
                job = self._jobs.get(task_id)
                if job is None or job.state is not TaskState.DELAYED or job.seq != seq:
                    continue
                self._gauge(job, "delayed", -1)
                self._make_ready(job)

    def _next_due(self, queues: Sequence[str]) -> int | None:
        due = None
        for queue in queues:
            heap = self._delayed.get(queue)
            while heap:
                eta, seq, task_id = heap[0]
                job = self._jobs.get(task_id)
                if job is not None and job.state is TaskState.DELAYED and job.seq == seq:
                    due = eta if due is None else min(due, eta)
                    break
                heapq.heappop(heap)
        return due

    def _take(self, task_id: str, now: int) -> Delivery:
        job = self._jobs[task_id]
        return self._claim(job, now)

    def _claim(self, job: _Job, now: int) -> Delivery:
        job.state = TaskState.RUNNING
        job.deliveries += 1
        job.started_ms = now
        self._running[job.id] = job
        self._gauge(job, "running", 1)
        return Delivery(
            id=job.id,
            message=job.message,
            attempt=job.attempt,
            token=str(job.deliveries),
            enqueued_ms=job.enqueued_ms,
        )

    def _finish(self, delivery: Delivery, outcome: Outcome, now: int) -> bool:
        """Apply one outcome; True when it made a task ready (wake the waiters)."""
        job = self._running.get(delivery.id)
        if job is None or str(job.deliveries) != delivery.token:
            return False  # stale: the task was released or redelivered since
        del self._running[job.id]
        self._gauge(job, "running", -1)
        job.error, job.traceback = outcome.error or job.error, outcome.traceback or job.traceback
        if outcome.kind == "ok":
            job.result = outcome.result
            self._count(job, "succeeded")
            self._finish_record(job, TaskState.SUCCEEDED, now)
        elif outcome.kind == "retry":
            self._count(job, "failed")
            self._count(job, "retried")
            job.attempt += 1
            job.seq = next(self._seq)
            self._delay(job, now + round(outcome.delay * 1000))
            return outcome.delay <= 0
        elif outcome.kind == "dead":
            self._count(job, "failed")
            self._count(job, "dead_lettered")
            self._gauge(job, "dead", 1)
            job.state = TaskState.DEAD
            job.finished_ms = now
            self._dead[job.message.queue][job.id] = None
            job.done.set()
        else:  # release: back to the queue untouched, at its old place in line
            self._make_ready(job)
            return True
        return False

    def _finish_record(self, job: _Job, state: TaskState, now: int) -> None:
        job.state = state
        job.finished_ms = now
        job.done.set()
        ttl = round(self.settings.result_ttl * 1000)
        if ttl <= 0:
            self._jobs.pop(job.id, None)
        else:
            self._finished.append((now + ttl, job.id))

    def _expire(self, now: int) -> None:
        while self._finished and self._finished[0][0] <= now:
            _until, task_id = self._finished.popleft()
            job = self._jobs.get(task_id)
            if job is not None and job.state in (TaskState.SUCCEEDED, TaskState.CANCELLED):
                del self._jobs[task_id]
        if len(self._idempotency) > 1024:
            for key in [k for k, (_id, until) in self._idempotency.items() if until <= now]:
                del self._idempotency[key]

    def _ids(self, queue: str, target: PurgeTarget) -> list[str]:
        if target == "dead":
            return list(self._dead.get(queue, {}))
        state = TaskState.QUEUED if target == "queued" else TaskState.DELAYED
        return [
            job.id
            for job in self._jobs.values()
            if job.message.queue == queue and job.state is state
        ]

    def _count(self, job: _Job, name: str) -> None:
        self._counts[(job.message.queue, job.message.priority)][name] += 1

    def _gauge(self, job: _Job, name: str, by: int) -> None:
        self._counts[(job.message.queue, job.message.priority)][name] += by

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()
        self._call_listeners()

    def _call_listeners(self) -> None:
        with self._cond:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()
