"""The consumer side: a worker takes tasks from a broker and runs them.

A :class:`Worker` runs ``concurrency`` slots. Each slot loops: record the
outcome of its last task and take the next one in one broker call
(:meth:`~dtpyfw.worker.Broker.exchange`), run it, repeat; an idle slot
blocks in :meth:`~dtpyfw.worker.Broker.wait`. A slot takes a task only when
it is free, so a worker never holds tasks it is not running: a task of
higher priority enqueued meanwhile is the next one any free slot takes.

Two pools:

- ``threads``: slots are threads. Sync tasks run in the slot's thread; async
  tasks run on one event loop thread shared by the slots. A sync task past
  its hard limit is abandoned with its thread and a fresh slot thread
  replaces it. This is the pool of ``dtpyfw worker run`` and of the
  ``threads`` strategy.
- ``asyncio``: slots are asyncio tasks on the loop that calls
  :meth:`Worker.astart` (so async tasks can use that loop's clients); sync
  tasks run in a thread each. In-memory broker only (the ``asyncio`` strategy).

Alongside the slots, a worker renews the leases of the tasks it runs (every
third of ``visibility_timeout``) and writes its heartbeat (every
``heartbeat_interval``, kept three intervals), and, when ``scheduler`` is on,
fires the schedules' ticks.

**Stopping** (:meth:`Worker.stop`, or SIGTERM/SIGINT under :meth:`Worker.run`):
the worker takes no new task, lets running ones finish for up to
``shutdown_timeout`` seconds, then puts those still running back in their
queue untouched (not counted as an attempt) and returns. A second signal
cuts the wait short.
"""

from __future__ import annotations

__all__ = ["Worker", "new_worker_id"]

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Literal

from dtpyfw.core.health import HealthResult
from dtpyfw.worker._errors import HardTimeLimitExceeded, WorkerError
from dtpyfw.worker._execute import Executor
from dtpyfw.worker._limits import LoopThread, ThreadInterrupt, Watchdog
from dtpyfw.worker._memory import MemoryBroker
from dtpyfw.worker._queue import TaskQueue
from dtpyfw.worker._records import Delivery, Outcome, WorkerInfo
from dtpyfw.worker._scheduler import Scheduler
from dtpyfw.worker._settings import Schedule

logger = logging.getLogger("dtpyfw.worker")
Pool = Literal["threads", "asyncio"]
Finished = list[tuple[Delivery, Outcome]]
_BACKOFF_MAX = 5.0


def new_worker_id() -> str:
    """``host:pid:random``: unique per worker and readable in ``dtpyfw worker stats``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(eq=False)
class _Slot:
    number: int
    current: Delivery | None = None
    abandoned: bool = False
    thread: threading.Thread | None = None
    task: asyncio.Task[None] | None = None


class Worker:
    """Runs tasks from ``queue``'s broker; see the module docstring.

    Args:
        queue: the TaskQueue (its broker, settings and registry are used).
        queues: queue names to serve (default ``worker.queues``).
        concurrency: slots (default ``worker.concurrency``).
        pool: ``threads`` or ``asyncio`` (default: ``asyncio`` for that strategy).
        scheduler: fire schedules here (default ``worker.scheduler``).
        schedules: the schedules (default: the settings' and the registry's).
        worker_id: the id in heartbeats and leases (default :func:`new_worker_id`).
    """

    def __init__(
        self,
        queue: TaskQueue,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        pool: Pool | None = None,
        scheduler: bool | None = None,
        schedules: Sequence[Schedule] | None = None,
        worker_id: str | None = None,
    ) -> None:
        settings = queue.settings
        self.queue = queue
        self.broker = queue.broker
        self.settings = settings
        self.queues = tuple(queues or settings.queues)
        self.concurrency = concurrency or settings.concurrency
        if self.concurrency < 1:
            raise WorkerError(f"concurrency must be at least 1, not {self.concurrency}")
        self.pool: Pool = pool or ("asyncio" if settings.strategy == "asyncio" else "threads")
        if self.pool == "asyncio" and not isinstance(self.broker, MemoryBroker):
            raise WorkerError("the asyncio pool runs on the in-memory broker only; use threads")
        self.id = worker_id or new_worker_id()
        self.executor = Executor(queue.registry, settings)
        chosen = (
            list(schedules)
            if schedules is not None
            else [*settings.schedules, *queue.registry.schedules()]
        )
        run_scheduler = settings.scheduler if scheduler is None else scheduler
        self.scheduler = Scheduler(queue, chosen) if run_scheduler and chosen else None
        reserve = getattr(self.broker, "reserve_connections", None)
        if callable(reserve):
            reserve(self.concurrency + 4)  # a connection per slot, plus upkeep
        self.started_at: datetime | None = None
        self.processed = 0
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self._numbers = iter(range(1, 1 << 30))
        self._stopping = threading.Event()
        self._stop_requested = threading.Event()
        self._force = threading.Event()
        self._done = threading.Event()
        self._upkeep_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watchdog = Watchdog()
        self._loop_thread: LoopThread | None = None
        self._last_contact = 0.0
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._atasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"<Worker {self.id} {self.pool}x{self.concurrency} queues={list(self.queues)}>"

    # -- running in threads ----------------------------------------------------------------
    def start(self) -> None:
        """Start the slots, the upkeep and the scheduler in threads; returns at once."""
        if self.pool != "threads":
            raise WorkerError("this worker uses the asyncio pool: await worker.astart()")
        if self.started_at is not None:
            raise WorkerError("a worker starts once; create another to start again")
        self.broker.ping()
        self.started_at = datetime.now(UTC)
        self._beat()
        for _ in range(self.concurrency):
            self._spawn_slot([])
        self._start_thread(self._upkeep, "upkeep")
        if self.scheduler is not None:
            scheduler = self.scheduler
            self._start_thread(lambda: scheduler.run(self._stopping), "scheduler")
        logger.info(
            "worker %s started: %d %s slot(s) on %s",
            self.id,
            self.concurrency,
            self.pool,
            ", ".join(self.queues),
            extra={"worker_id": self.id, "queues": list(self.queues)},
        )

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully (see the module docstring); stopping twice is harmless."""
        if self._stopping.is_set():
            self._done.wait(timeout)
            return
        self._stopping.set()
        self._stop_requested.set()
        grace = self.settings.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + grace
        with contextlib.suppress(Exception):
            self.broker.wake(self.id, self.concurrency)
        while not self._force.is_set():
            with self._lock:  # abandoned threads may never end: do not wait for them
                alive = [s.thread for s in self._slots if s.thread and not s.abandoned]
            if not alive or time.monotonic() >= deadline:
                break
            alive[0].join(min(0.1, max(0.0, deadline - time.monotonic())))
        self._release_running()
        self._finish_upkeep()

    def run(
        self, *, handle_signals: bool = True, on_started: Callable[[], object] | None = None
    ) -> None:
        """Start, block until :meth:`request_stop`, SIGTERM or SIGINT, then stop gracefully.

        ``on_started`` is called once the worker runs (to announce it, serve health...).
        """
        previous: dict[int, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            self.start()
            if on_started is not None:
                on_started()
            while not self._stop_requested.wait(0.5):
                pass
            self.stop()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop gracefully (safe from signal handlers and other threads)."""
        if self._stop_requested.is_set():
            self._force.set()
        self._stop_requested.set()

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        logger.info(
            "worker %s got %s: stopping%s",
            self.id,
            signal.Signals(number).name,
            " at once" if self._stop_requested.is_set() else " after running tasks finish",
        )
        self.request_stop()

    def _spawn_slot(self, finished: Finished) -> None:
        slot = _Slot(number=next(self._numbers))
        thread = threading.Thread(
            target=self._slot_main,
            args=(slot, finished),
            name=f"dtpyfw-worker-slot-{slot.number}",
            daemon=True,
        )
        slot.thread = thread
        with self._lock:
            self._slots.append(slot)
        thread.start()

    def _slot_main(self, slot: _Slot, finished: Finished) -> None:
        try:
            self._slot_loop(slot, finished)
        except BaseException:
            if not slot.abandoned:  # an abandoned thread may get a late injected exception
                logger.exception("worker slot %d stopped on an unexpected error", slot.number)
        finally:
            with self._lock:
                if slot in self._slots:
                    self._slots.remove(slot)

    def _slot_loop(self, slot: _Slot, finished: Finished) -> None:
        backoff = 0.05
        while True:
            taking = not self._stopping.is_set()
            if not taking and not finished:
                return
            try:
                deliveries = self.broker.exchange(finished, self.queues, int(taking), self.id)
            except Exception as exc:
                if not taking:
                    logger.warning("worker %s could not record outcomes at stop: %s", self.id, exc)
                    return  # the leases expire and the tasks are redelivered
                logger.warning("worker %s: broker call failed, retrying: %s", self.id, exc)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            backoff = 0.05
            self._last_contact = time.monotonic()
            finished = []
            if not deliveries:
                if not taking:
                    return
                try:
                    self.broker.wait(self.queues, self.settings.poll_interval, self.id)
                except Exception as exc:
                    logger.warning("worker %s: waiting on the broker failed: %s", self.id, exc)
                    self._stopping.wait(backoff)
                continue
            delivery = deliveries[0]
            with self._lock:
                slot.current = delivery
            outcome = self._run_in_thread(slot, delivery)
            with self._lock:
                if slot.abandoned:
                    return
                slot.current = None
                self.processed += 1
            finished = [(delivery, outcome)]

    def _run_in_thread(self, slot: _Slot, delivery: Delivery) -> Outcome:
        prepared = self.executor.prepare(delivery)
        if isinstance(prepared, Outcome):
            return prepared
        if prepared.task.is_async:
            if self._loop_thread is None:
                with self._lock:
                    if self._loop_thread is None:
                        self._loop_thread = LoopThread()
            future = self._loop_thread.submit(self.executor.run_async(prepared, self._watchdog))
            return future.result()

        def abandon(guard: ThreadInterrupt) -> None:
            with self._lock:
                if slot.abandoned or slot.current is not delivery:
                    return
                slot.abandoned = True
            guard.interrupt(HardTimeLimitExceeded)
            outcome = self.executor.hard_limit(prepared)
            self._spawn_slot([(delivery, outcome)])

        return self.executor.run_sync(prepared, self._watchdog, on_hard_limit=abandon)

    def _release_running(self) -> None:
        with self._lock:
            running = [s for s in self._slots if s.current is not None and not s.abandoned]
            for slot in running:
                slot.abandoned = True
        released = [(slot.current, Outcome("release")) for slot in running if slot.current]
        if not released:
            return
        logger.warning(
            "worker %s: %d task(s) still running at the end of the shutdown grace period "
            "go back to their queue",
            self.id,
            len(released),
            extra={"worker_id": self.id},
        )
        try:
            self.broker.exchange(released, self.queues, 0, self.id)
        except Exception as exc:
            logger.warning(
                "worker %s could not release its tasks (they will be redelivered "
                "after the visibility timeout): %s",
                self.id,
                exc,
            )

    # -- running on asyncio ----------------------------------------------------------------
    async def astart(self) -> None:
        """Start the asyncio pool on the running loop; returns at once."""
        self.attach()

    def attach(self) -> None:
        """Start the asyncio pool on the loop running in this thread (sync twin of astart)."""
        if self.pool != "asyncio":
            raise WorkerError("this worker uses the threads pool: call worker.start()")
        if self.started_at is not None:
            raise WorkerError("a worker starts once; create another to start again")
        self._aloop = asyncio.get_running_loop()
        self.started_at = datetime.now(UTC)
        broker = self.broker
        assert isinstance(broker, MemoryBroker)
        broker.add_listener(self._on_work)
        self._beat()
        for _ in range(self.concurrency):
            slot = _Slot(number=next(self._numbers))
            slot.task = self._aloop.create_task(self._aslot(slot))
            self._slots.append(slot)
        self._atasks.append(self._aloop.create_task(self._aupkeep()))

    @property
    def started(self) -> bool:
        """Whether start/astart ran."""
        return self.started_at is not None

    def cancel(self) -> None:
        """Stop the asyncio pool at once from its loop's thread: running tasks are cancelled.

        What is still running goes back to its queue. Prefer :meth:`astop`, which
        lets running tasks finish first.
        """
        if self._stopping.is_set() or self._aloop is None:
            return
        self._stopping.set()
        self._wake_waiters()
        for slot in self._slots:
            if slot.task is not None:
                slot.task.cancel()
        for task in self._atasks:
            task.cancel()
        self._release_running()
        broker = self.broker
        assert isinstance(broker, MemoryBroker)
        broker.remove_listener(self._on_work)
        self._finish_upkeep()

    async def astop(self, timeout: float | None = None) -> None:
        """Async twin of :meth:`stop` for the asyncio pool."""
        if self._stopping.is_set() or self._aloop is None:
            return
        self._stopping.set()
        self._wake_waiters()
        tasks = [slot.task for slot in self._slots if slot.task is not None]
        grace = self.settings.shutdown_timeout if timeout is None else timeout
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        self._release_running()
        for task in self._atasks:
            task.cancel()
        if self._atasks:
            await asyncio.wait(self._atasks)
        broker = self.broker
        assert isinstance(broker, MemoryBroker)
        broker.remove_listener(self._on_work)
        self._finish_upkeep()

    async def _aslot(self, slot: _Slot) -> None:
        assert self._aloop is not None
        broker = self.broker
        assert isinstance(broker, MemoryBroker)
        finished: Finished = []
        while True:
            taking = not self._stopping.is_set()
            if not taking and not finished:
                return
            waiter: asyncio.Future[None] = self._aloop.create_future()
            self._waiters.add(waiter)
            try:
                deliveries = broker.exchange(finished, self.queues, int(taking), self.id)
                finished = []
                if not deliveries:
                    if not taking:
                        return
                    due = broker.seconds_until_due(self.queues)
                    wait = self.settings.poll_interval if due is None else min(due, 3600.0)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(waiter, min(wait, self.settings.poll_interval))
                    continue
            finally:
                self._waiters.discard(waiter)
            delivery = deliveries[0]
            slot.current = delivery
            prepared = self.executor.prepare(delivery)
            if isinstance(prepared, Outcome):
                outcome = prepared
            else:
                outcome = await self.executor.run_async(prepared, self._watchdog)
            slot.current = None
            self.processed += 1
            finished = [(delivery, outcome)]

    def _on_work(self) -> None:
        loop = self._aloop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake_waiters)

    def _wake_waiters(self) -> None:
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)

    async def _aupkeep(self) -> None:
        scheduler = self.scheduler
        while not self._stopping.is_set():
            if scheduler is not None:
                try:
                    scheduler.fire_due()
                except Exception:
                    logger.exception("scheduler could not fire its ticks")
            self._beat()
            wait = self.settings.heartbeat_interval
            if scheduler is not None:
                wait = min(wait, scheduler.seconds_until_next())
            await asyncio.sleep(max(wait, 0.001))

    # -- upkeep ----------------------------------------------------------------------------
    def _start_thread(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=f"dtpyfw-worker-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _upkeep(self) -> None:
        interval = min(self.settings.heartbeat_interval, self.settings.visibility_timeout / 3)
        last_beat = time.monotonic()
        while not self._upkeep_stop.wait(interval):
            with self._lock:
                running = [s.current for s in self._slots if s.current and not s.abandoned]
            try:
                if running:
                    self.broker.extend(running)
                if time.monotonic() - last_beat >= self.settings.heartbeat_interval - 1e-3:
                    self._beat()
                    last_beat = time.monotonic()
                self._last_contact = time.monotonic()
            except Exception as exc:
                logger.warning("worker %s: lease renewal or heartbeat failed: %s", self.id, exc)

    def _beat(self, state: str = "running") -> None:
        now = datetime.now(UTC)
        running = self.running
        info = WorkerInfo(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            concurrency=self.concurrency,
            started_at=self.started_at or now,
            beat_at=now,
            running=running,
            processed=self.processed,
            state=state,
        )
        self.broker.heartbeat(info, self.settings.heartbeat_interval * 3)
        self._last_contact = time.monotonic()

    def _finish_upkeep(self) -> None:
        self._upkeep_stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self.broker.forget_worker(self.id)
        self._watchdog.close()
        if self._loop_thread is not None:
            self._loop_thread.stop()
        self._done.set()
        logger.info("worker %s stopped after %d task(s)", self.id, self.processed)

    # -- health ----------------------------------------------------------------------------
    @property
    def running(self) -> int:
        """How many tasks this worker runs now."""
        with self._lock:
            return sum(1 for s in self._slots if s.current is not None and not s.abandoned)

    def liveness(self) -> HealthResult:
        """Alive: started, not finished stopping, and its upkeep still runs."""
        started = time.perf_counter()
        problem = None
        if self.started_at is None:
            problem = "not started"
        elif self._done.is_set():
            problem = "stopped"
        elif self.pool == "threads" and not all(t.is_alive() for t in self._threads):
            problem = "an upkeep thread died"
        return _result("liveness", started, problem)

    def readiness(self) -> HealthResult:
        """Ready: alive, taking tasks, and the broker answered within three heartbeats."""
        started = time.perf_counter()
        live = self.liveness()
        problem = live.error
        if problem is None and self._stopping.is_set():
            problem = "stopping"
        elif problem is None:
            silent = time.monotonic() - self._last_contact
            if silent > 3 * self.settings.heartbeat_interval:
                problem = f"no answer from the broker for {silent:.0f}s"
        return _result("readiness", started, problem)

    @contextlib.contextmanager
    def running_in_background(self) -> Iterator[Worker]:
        """``start()`` on entry, ``stop()`` on exit (threads pool)."""
        self.start()
        try:
            yield self
        finally:
            self.stop()


def _result(name: str, started: float, problem: str | None) -> HealthResult:
    return HealthResult(
        name=name,
        ok=problem is None,
        latency_ms=(time.perf_counter() - started) * 1000,
        error=problem,
    )
