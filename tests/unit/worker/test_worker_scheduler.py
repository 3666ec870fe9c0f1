"""Schedules on a fake clock: interval and cron ticks, catch-up policies, one fire per tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from dtpyfw.worker import (
    MemoryBroker,
    Schedule,
    Scheduler,
    TaskQueue,
    TaskRegistry,
    WorkerSettings,
    schedule,
    task,
)
from dtpyfw.worker._records import TaskState

REGISTRY = TaskRegistry()
T0 = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)  # a Monday


@task(name="report", registry=REGISTRY)
def report(kind: str = "daily") -> str:
    return kind


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make(*schedules: Schedule, broker: MemoryBroker | None = None) -> tuple[Scheduler, Clock]:
    settings = WorkerSettings()
    queue = TaskQueue(broker or MemoryBroker(settings), settings, REGISTRY)
    clock = Clock(T0)
    return Scheduler(queue, schedules, clock=clock), clock


def every(seconds: float, **options: Any) -> Schedule:
    return Schedule(name=options.pop("name", "tick"), task="report", every=seconds, **options)


def test_interval_ticks_are_aligned_to_the_epoch() -> None:
    """every: 20 fires at :00, :20, :40; the first tick is the next one after start."""
    scheduler, clock = make(every(20))
    clock.now = T0 + timedelta(seconds=8)
    assert scheduler.fire_due() == []
    assert scheduler.seconds_until_next() == 12
    clock.now = T0 + timedelta(seconds=20)
    assert scheduler.fire_due() == [("tick", T0 + timedelta(seconds=20))]
    assert scheduler.fire_due() == []
    clock.now = T0 + timedelta(seconds=45)
    assert scheduler.fire_due() == [("tick", T0 + timedelta(seconds=40))]
    assert make(every(3600))[0].seconds_until_next() == 30  # capped, to notice clock jumps


def test_cron_ticks_follow_the_schedules_timezone() -> None:
    """'0 9 * * MON-FRI' in Berlin fires at 07:00 UTC in June, skipping the weekend."""
    nine = Schedule(name="nine", task="report", cron="0 9 * * MON-FRI", timezone="Europe/Berlin")
    scheduler, clock = make(nine)
    fired = []
    for hours in range(0, 24 * 7, 1):
        clock.now = T0 + timedelta(hours=hours)
        fired += [tick for _name, tick in scheduler.fire_due()]
    assert [tick.isoformat() for tick in fired] == [
        f"2024-06-{day:02d}T07:00:00+00:00" for day in (4, 5, 6, 7, 10)
    ]


def test_the_enqueued_task_carries_its_schedule_tick_and_arguments() -> None:
    """A fired tick is a normal task whose message names its schedule and tick."""
    broker = MemoryBroker(WorkerSettings())
    scheduler, clock = make(every(60, kwargs={"kind": "hourly"}, priority="high"), broker=broker)
    scheduler.fire_due()
    clock.now = T0 + timedelta(minutes=1)
    scheduler.fire_due()
    (delivery,) = broker.exchange([], ["default"], 1, "w")
    message = delivery.message
    assert (message.type, message.kwargs, message.priority) == ("report", {"kind": "hourly"}, 9)
    assert (message.schedule, message.tick) == ("tick", T0 + timedelta(minutes=1))


def test_replicas_sharing_a_broker_fire_each_tick_once() -> None:
    """Three schedulers on one broker, each checking every tick: one enqueue per tick."""
    broker = MemoryBroker(WorkerSettings())
    replicas = [make(every(10), broker=broker) for _ in range(3)]
    fired: list[datetime] = []
    for step in range(1, 31):
        for scheduler, clock in replicas:
            clock.now = T0 + timedelta(seconds=step * 5 + 0.1)
            fired += [tick for _name, tick in scheduler.fire_due()]
    assert fired == [T0 + timedelta(seconds=10 * n) for n in range(1, 16)]
    (row,) = broker.stats()
    assert row.enqueued == 15


def test_a_late_replica_does_not_fire_an_old_tick_again() -> None:
    """A replica whose clock lags sees the tick done even long after it was fired."""
    broker = MemoryBroker(WorkerSettings())
    (ahead, ahead_clock), (behind, behind_clock) = (
        make(every(10), broker=broker),
        make(every(10), broker=broker),
    )
    ahead.fire_due()
    behind.fire_due()
    ahead_clock.now = T0 + timedelta(seconds=30)
    assert [t for _n, t in ahead.fire_due()] == [T0 + timedelta(seconds=30)]
    behind_clock.now = T0 + timedelta(seconds=10)
    assert behind.fire_due() == []


@pytest.mark.parametrize(
    ("catch_up", "expected_minutes"),
    [("once", [60]), ("all", [52, 53, 54, 55, 56, 57, 58, 59, 60]), ("skip", [])],
)
def test_missed_ticks_follow_the_catch_up_policy(
    catch_up: str, expected_minutes: list[int]
) -> None:
    """After an hour of downtime: once fires the latest, all the last N, skip none late."""
    broker = MemoryBroker(WorkerSettings())
    first, clock = make(every(60, catch_up=catch_up, max_catch_up=9), broker=broker)
    first.fire_due()
    clock.now = T0 + timedelta(minutes=1)
    assert len(first.fire_due()) == 1  # the last tick before the downtime
    restarted, clock = make(every(60, catch_up=catch_up, max_catch_up=9), broker=broker)
    clock.now = T0 + timedelta(minutes=60, seconds=45)  # 45 s late for the 60th minute
    fired = restarted.fire_due()
    assert [tick for _name, tick in fired] == [T0 + timedelta(minutes=m) for m in expected_minutes]
    clock.now = T0 + timedelta(minutes=61)
    assert [tick for _name, tick in restarted.fire_due()] == [T0 + timedelta(minutes=61)]


def test_skip_still_fires_a_tick_seen_within_the_grace() -> None:
    """catch_up skip drops ticks more than 30 s late, not the one just due."""
    broker = MemoryBroker(WorkerSettings())
    first, clock = make(every(60, catch_up="skip"), broker=broker)
    first.fire_due()
    clock.now = T0 + timedelta(minutes=1)
    first.fire_due()
    clock.now = T0 + timedelta(minutes=10, seconds=20)
    assert [tick for _name, tick in first.fire_due()] == [T0 + timedelta(minutes=10)]


def test_a_schedule_seen_for_the_first_time_catches_nothing_up() -> None:
    """No tick recorded yet: the schedule starts with its next tick after now."""
    scheduler, clock = make(every(3600, catch_up="all"))
    clock.now = T0 + timedelta(minutes=30)
    assert scheduler.fire_due() == []
    clock.now = T0 + timedelta(hours=1)
    assert len(scheduler.fire_due()) == 1


def test_schedules_are_validated() -> None:
    """Exactly one of every/cron, a real timezone, a valid cron and unique names."""
    with pytest.raises(ValidationError, match="exactly one of `every` and `cron`"):
        Schedule(name="x", task="t")
    with pytest.raises(ValidationError, match="exactly one of `every` and `cron`"):
        Schedule(name="x", task="t", every=1, cron="* * * * *")
    with pytest.raises(ValidationError, match="unknown timezone 'Mars/Olympus'"):
        Schedule(name="x", task="t", cron="* * * * *", timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="minute field '61'"):
        Schedule(name="x", task="t", cron="61 * * * *")
    with pytest.raises(ValidationError, match="repeated: a"):
        WorkerSettings.model_validate({"schedules": [{"name": "a", "task": "t", "every": 1}] * 2})


def test_schedule_helper_registers_in_code() -> None:
    """schedule() declares a Schedule in a registry; a clash under one name is refused."""
    registry = TaskRegistry()
    declared = schedule(report, every=timedelta(minutes=5), registry=registry)
    assert declared.name == "report"
    assert declared.every == 300
    assert registry.schedules() == [declared]
    schedule("report", every=300, registry=registry)  # the same again is fine
    from dtpyfw.worker import WorkerError

    with pytest.raises(WorkerError, match="already declared differently"):
        schedule("report", cron="@hourly", registry=registry)


def test_fired_ticks_run_like_any_task() -> None:
    """A tick enqueued on the inline strategy runs at once with its arguments."""
    from dtpyfw.worker import InlineBroker

    settings = WorkerSettings(strategy="inline")
    queue = TaskQueue(InlineBroker(settings, REGISTRY), settings, REGISTRY)
    clock = Clock(T0)
    scheduler = Scheduler(queue, [every(60, kwargs={"kind": "weekly"})], clock=clock)
    scheduler.fire_due()
    clock.now = T0 + timedelta(minutes=1)
    ((_name, tick),) = scheduler.fire_due()
    assert queue.broker.last_tick("tick") == round(tick.timestamp() * 1000)
    (row,) = queue.stats()
    assert row.succeeded == 1
    assert TaskState.SUCCEEDED.finished
