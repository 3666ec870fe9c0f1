"""Background tasks: declare with ``@task``, enqueue with ``.delay()``, run with a worker.

::

    from dtpyfw.worker import task

    @task(queue="mail", priority="high", retry=RetryPolicy(attempts=5), timeout=30)
    def send_welcome(user_id: int) -> None: ...

    send_welcome.delay(42)                      # the container binds the queue at start
    handle = send_welcome.apply((42,), delay=60)
    handle.result(timeout=5)

Where tasks wait and run is the ``worker.strategy`` setting: ``inline``
(inside ``delay()``, for tests), ``threads`` / ``asyncio`` (in this process,
from an in-memory priority queue), ``redis`` (in Redis, for
``dtpyfw worker run`` processes) or ``kafka`` (on Kafka topics per queue and
priority band, state in Redis). See ``docs/worker.md``.
"""

import typing as _typing

from dtpyfw.worker._cron import CronExpression
from dtpyfw.worker._errors import (
    HardTimeLimitExceeded,
    InvalidSchedule,
    InvalidTaskArguments,
    InvalidTaskResult,
    ResultTimeout,
    SoftTimeLimitExceeded,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    WorkerError,
)
from dtpyfw.worker._priority import Priority
from dtpyfw.worker._settings import Schedule, WorkerSettings

if _typing.TYPE_CHECKING:
    from dtpyfw.worker._broker import Broker, Tick
    from dtpyfw.worker._container import WorkerContainer
    from dtpyfw.worker._inline import InlineBroker
    from dtpyfw.worker._kafka import KafkaBroker
    from dtpyfw.worker._memory import MemoryBroker
    from dtpyfw.worker._queue import TaskHandle, TaskQueue
    from dtpyfw.worker._records import QueueStats, TaskInfo, TaskMessage, TaskState, WorkerInfo
    from dtpyfw.worker._redis import RedisBroker
    from dtpyfw.worker._scheduler import Scheduler
    from dtpyfw.worker._task import (
        Task,
        TaskContext,
        TaskRegistry,
        current_queue,
        current_task,
        default_registry,
        schedule,
        task,
    )
    from dtpyfw.worker._worker import Worker

__all__ = [
    "Broker",
    "CronExpression",
    "HardTimeLimitExceeded",
    "InlineBroker",
    "InvalidSchedule",
    "InvalidTaskArguments",
    "InvalidTaskResult",
    "KafkaBroker",
    "MemoryBroker",
    "Priority",
    "QueueStats",
    "RedisBroker",
    "ResultTimeout",
    "Schedule",
    "Scheduler",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "TaskHandle",
    "TaskInfo",
    "TaskMessage",
    "TaskNotFound",
    "TaskQueue",
    "TaskRegistry",
    "TaskState",
    "Tick",
    "Worker",
    "WorkerContainer",
    "WorkerError",
    "WorkerInfo",
    "WorkerSettings",
    "current_queue",
    "current_task",
    "default_registry",
    "schedule",
    "task",
]


# Settings load with every service (dtpyfw.config imports them); the machinery
# (brokers, workers, the task registry) loads on first use.
_LAZY = {
    "Broker": "dtpyfw.worker._broker",
    "Tick": "dtpyfw.worker._broker",
    "WorkerContainer": "dtpyfw.worker._container",
    "InlineBroker": "dtpyfw.worker._inline",
    "KafkaBroker": "dtpyfw.worker._kafka",
    "MemoryBroker": "dtpyfw.worker._memory",
    "TaskHandle": "dtpyfw.worker._queue",
    "TaskQueue": "dtpyfw.worker._queue",
    "QueueStats": "dtpyfw.worker._records",
    "TaskInfo": "dtpyfw.worker._records",
    "TaskMessage": "dtpyfw.worker._records",
    "TaskState": "dtpyfw.worker._records",
    "WorkerInfo": "dtpyfw.worker._records",
    "RedisBroker": "dtpyfw.worker._redis",
    "Scheduler": "dtpyfw.worker._scheduler",
    "Task": "dtpyfw.worker._task",
    "TaskContext": "dtpyfw.worker._task",
    "TaskRegistry": "dtpyfw.worker._task",
    "current_queue": "dtpyfw.worker._task",
    "current_task": "dtpyfw.worker._task",
    "default_registry": "dtpyfw.worker._task",
    "schedule": "dtpyfw.worker._task",
    "task": "dtpyfw.worker._task",
    "Worker": "dtpyfw.worker._worker",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
