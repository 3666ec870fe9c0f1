"""Firing schedules: each tick enqueued once, however many workers run the scheduler.

Every worker with ``worker.scheduler`` on runs a :class:`Scheduler`. When a
tick is due, each of them asks the broker to enqueue it *only if no tick of
that schedule at or after this one was enqueued before*; the broker checks
and records the tick in the same atomic step (a Lua script in Redis), so one
replica wins and the others see it done. Comparing with the last tick, not
locking each tick for a while, also stops a replica that starts late (or
whose clock lags) from firing a tick again once a lock would have expired.

**Missed ticks.** Ticks that came due while no scheduler ran (all workers
down, or paused) are handled by the schedule's ``catch_up``:

- ``once`` (default): one run, for the latest due tick, however late;
- ``skip``: only the latest due tick, and only if it is at most
  ``grace`` seconds late; older ones are dropped;
- ``all``: every due tick, oldest first, at most ``max_catch_up`` (the latest).

A schedule first seen (no tick recorded in the broker) starts with its next
tick after now: nothing is caught up. :meth:`Scheduler.fire_due` is driven by
the clock it is given, so tests move time by hand.
"""

from __future__ import annotations

__all__ = ["Scheduler"]

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dtpyfw.worker._broker import Tick
from dtpyfw.worker._records import from_ms
from dtpyfw.worker._settings import Schedule

if TYPE_CHECKING:
    from dtpyfw.worker._queue import TaskQueue

logger = logging.getLogger("dtpyfw.worker")
Now = Callable[[], datetime]
#: How late a tick may be and still count as on time for ``catch_up: skip``.
GRACE = timedelta(seconds=30)
_MAX_WAIT = 30.0
_MAX_STEPS = 1_000_000


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Enqueues the ticks of ``schedules`` through ``queue`` as they come due."""

    def __init__(
        self, queue: TaskQueue, schedules: Sequence[Schedule], *, clock: Now = _utcnow
    ) -> None:
        self.queue = queue
        self.schedules = list(schedules)
        self.clock = clock
        self._next: dict[str, datetime] = {}

    def __repr__(self) -> str:
        return f"<Scheduler {len(self.schedules)} schedule(s)>"

    def fire_due(self, now: datetime | None = None) -> list[tuple[str, datetime]]:
        """Enqueue every tick due at ``now`` (default: the clock); ``(schedule, tick)`` fired.

        Ticks another replica fired already are left out.
        """
        now = now or self.clock()
        fired: list[tuple[str, datetime]] = []
        for schedule in self.schedules:
            due = self._due(schedule, now)
            if not due:
                continue
            self._next[schedule.name] = schedule.next_after(due[-1])
            for tick in _chosen(schedule, due, now):
                if self._fire(schedule, tick):
                    fired.append((schedule.name, tick))
        return fired

    def seconds_until_next(self, now: datetime | None = None) -> float:
        """Seconds until the earliest next tick (at most 30, so clock jumps are noticed)."""
        now = now or self.clock()
        upcoming = [self._next_tick(schedule, now) for schedule in self.schedules]
        if not upcoming:
            return _MAX_WAIT
        return max(0.0, min(_MAX_WAIT, (min(upcoming) - now).total_seconds()))

    def run(self, stop: threading.Event) -> None:
        """Fire ticks as they come due until ``stop`` is set (a worker's scheduler thread)."""
        while not stop.is_set():
            try:
                self.fire_due()
                wait = self.seconds_until_next()
            except Exception:
                logger.exception("scheduler could not fire its ticks; trying again")
                wait = 1.0
            stop.wait(max(wait, 0.001))

    def _next_tick(self, schedule: Schedule, now: datetime) -> datetime:
        found = self._next.get(schedule.name)
        if found is None:
            last = from_ms(self.queue.broker.last_tick(schedule.name))
            found = schedule.next_after(last if last is not None else now)
            self._next[schedule.name] = found
        return found

    def _due(self, schedule: Schedule, now: datetime) -> list[datetime]:
        """Due ticks, oldest first; only as many as the catch-up policy can use."""
        keep = schedule.max_catch_up if schedule.catch_up == "all" else 1
        tick = self._next_tick(schedule, now)
        if tick > now:
            return []
        if schedule.every is not None:  # evenly spaced: no need to walk a long outage
            step = timedelta(milliseconds=round(schedule.every * 1000))
            count = (now - tick) // step + 1
            return [tick + step * index for index in range(max(0, count - keep), count)]
        due: deque[datetime] = deque(maxlen=keep)
        steps = 0
        while tick <= now and steps < _MAX_STEPS:
            due.append(tick)
            tick = schedule.next_after(tick)
            steps += 1
        return list(due)

    def _fire(self, schedule: Schedule, tick: datetime) -> bool:
        at_ms = round(tick.timestamp() * 1000)
        handle = self.queue.enqueue_tick(
            schedule.task,
            schedule.args,
            schedule.kwargs,
            tick=Tick(schedule.name, at_ms),
            queue=schedule.queue,
            priority=schedule.priority,
        )
        if handle is None:
            return False
        logger.info(
            "schedule %s fired %s for %s",
            schedule.name,
            schedule.task,
            tick.isoformat(),
            extra={"schedule": schedule.name, "task_name": schedule.task, "task_id": handle.id},
        )
        return True


def _chosen(schedule: Schedule, due: list[datetime], now: datetime) -> list[datetime]:
    if schedule.catch_up == "all":
        return due
    latest = due[-1]
    if schedule.catch_up == "skip" and now - latest > GRACE:
        return []
    return [latest]
