"""Worker settings: the strategy that runs tasks, limits, retries and schedules."""

from __future__ import annotations

__all__ = ["Schedule", "WorkerSettings"]

import math
import zoneinfo
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    model_validator,
)

from dtpyfw.core.retry import RetryPolicy
from dtpyfw.worker._cron import CronExpression
from dtpyfw.worker._errors import InvalidSchedule
from dtpyfw.worker._priority import parse_priority

#: A priority in settings: 0-9 or low / normal / high, stored as its number.
PriorityField = Annotated[
    int,
    BeforeValidator(parse_priority),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 9},
                {"enum": ["low", "normal", "high"]},
            ]
        }
    ),
]
_NAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Schedule(BaseModel):
    """A task enqueued on a timetable: ``every`` N seconds, or on a ``cron`` expression.

    Interval ticks are aligned to the Unix epoch (``every: 3600`` fires on the
    hour, UTC), so every replica computes the same ticks. Cron ticks are
    wall-clock times in ``timezone``. ``catch_up`` says what happens to ticks
    missed while no worker ran: ``skip`` fires none of them, ``once`` (the
    default) fires the latest one once, ``all`` fires each (at most
    ``max_catch_up``, the latest ones).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN, description="unique name of the schedule")
    task: str = Field(min_length=1, description="name of the task to enqueue")
    every: float | None = Field(default=None, gt=0, description="seconds between runs")
    cron: str | None = Field(
        default=None, description="5-field cron: minute hour day-of-month month day-of-week"
    )
    timezone: str = Field(default="UTC", description="IANA timezone of the cron times")
    args: list[Any] = Field(default_factory=list, description="positional arguments")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments")
    queue: str | None = Field(default=None, description="queue (default: the task's)")
    priority: PriorityField | None = Field(default=None, description="0-9 (default: the task's)")
    catch_up: Literal["skip", "once", "all"] = Field(
        default="once", description="what to do with ticks missed while no worker ran"
    )
    max_catch_up: int = Field(default=100, ge=1, description="most missed ticks `all` fires")

    _cron: CronExpression | None = PrivateAttr(default=None)
    _tz: tzinfo = PrivateAttr(default=UTC)

    @model_validator(mode="after")
    def _check(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise InvalidSchedule(f"schedule {self.name!r}: give exactly one of `every` and `cron`")
        if self.every is not None and not math.isfinite(self.every):
            raise InvalidSchedule(f"schedule {self.name!r}: `every` must be finite")
        try:
            self._tz = UTC if self.timezone == "UTC" else zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidSchedule(
                f"schedule {self.name!r}: unknown timezone {self.timezone!r}"
            ) from exc
        if self.cron is not None:
            self._cron = CronExpression(self.cron)
        return self

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (aware), in UTC."""
        if moment.tzinfo is None:
            raise ValueError("next_after() needs an aware datetime")
        if self._cron is not None:
            return self._cron.next_after(moment, self._tz).astimezone(UTC)
        assert self.every is not None
        step = round(self.every * 1000)
        elapsed = (moment - _EPOCH) // timedelta(milliseconds=1)
        return _EPOCH + timedelta(milliseconds=(elapsed // step + 1) * step)


class WorkerSettings(BaseModel):
    """The ``worker`` section. Defaults give the in-process thread pool.

    ``inline`` runs a task inside ``delay()`` (for tests); ``threads`` and
    ``asyncio`` run tasks in this process from an in-memory priority queue
    (lost when the process stops); ``redis`` keeps tasks in Redis (the
    ``redis`` section says where) for ``dtpyfw worker run`` processes;
    ``kafka`` sends them on Kafka topics (the ``kafka`` section), one per
    queue and priority band, and keeps their state in Redis.
    """

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["inline", "threads", "asyncio", "redis", "kafka"] = Field(
        default="threads",
        description="where tasks wait and run: inline (inside delay(), for tests), threads "
        "or asyncio (in this process, in memory), redis or kafka (dtpyfw worker run "
        "processes; kafka also needs the redis section, for task state)",
    )
    queues: list[Annotated[str, Field(pattern=_NAME_PATTERN)]] = Field(
        default_factory=lambda: ["default"],
        min_length=1,
        description="queues this process's workers take tasks from",
    )
    default_queue: str = Field(
        default="default", pattern=_NAME_PATTERN, description="queue of tasks that name none"
    )
    concurrency: int = Field(default=4, ge=1, le=1024, description="tasks run at once per worker")
    namespace: str = Field(
        default="dtpyfw",
        pattern=_NAME_PATTERN,
        description="prefix of every Redis key, Kafka topic and consumer group",
    )
    partitions: int = Field(
        default=6,
        ge=1,
        description="partitions of each Kafka task topic (kafka strategy), set when the topic "
        "is created; the most worker processes that share one priority band",
    )
    retry: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(
            attempts=3, initial_delay=1.0, max_delay=60.0, multiplier=2.0, jitter=0.5
        ),
        description="retries of tasks that declare no policy; then the dead-letter queue",
    )
    soft_timeout: float | None = Field(
        default=None, gt=0, description="seconds before SoftTimeLimitExceeded is raised in a task"
    )
    timeout: float | None = Field(
        default=None, gt=0, description="seconds before the worker abandons a task (hard limit)"
    )
    result_ttl: float = Field(
        default=86400.0, ge=0, description="seconds results and states are kept; 0 keeps none"
    )
    idempotency_ttl: float = Field(
        default=86400.0, gt=0, description="seconds an idempotency key blocks a second enqueue"
    )
    visibility_timeout: float = Field(
        default=30.0,
        gt=0,
        description="seconds a task taken by a silent worker waits before it is redelivered",
    )
    max_deliveries: int = Field(
        default=5,
        ge=0,
        description="lapsed leases (the worker died or stalled) after which a task is "
        "dead-lettered instead of redelivered; 0 redelivers for ever",
    )
    starvation_limit: int = Field(
        default=20,
        ge=0,
        description="after this many picks in a row pass over an older lower-priority task, "
        "the oldest waiting task runs next; 0 drains strictly by priority",
    )
    poll_interval: float = Field(
        default=1.0, gt=0, description="longest wait, seconds, before an idle worker looks again"
    )
    heartbeat_interval: float = Field(
        default=5.0, gt=0, description="seconds between a worker's heartbeats"
    )
    shutdown_timeout: float = Field(
        default=30.0, ge=0, description="seconds a stopping worker lets running tasks finish"
    )
    scheduler: bool = Field(
        default=True, description="run the schedules in this worker (each tick fires once)"
    )
    schedules: list[Schedule] = Field(
        default_factory=list,
        description="timetables, e.g. {name: nightly, task: reports.build, cron: '0 3 * * *', "
        "timezone: Europe/Berlin} or {name: ping, task: health.ping, every: 30}",
    )
    health_timeout: float = Field(default=2.0, gt=0, description="seconds the health check waits")

    @model_validator(mode="after")
    def _unique_schedules(self) -> WorkerSettings:
        names = [schedule.name for schedule in self.schedules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"schedule names must be unique; repeated: {', '.join(repeated)}")
        return self
