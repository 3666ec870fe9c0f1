"""The worker's exceptions: one subtree of :class:`~dtpyfw.core.errors.DtpyfwError`.

::

    DtpyfwError
    └── WorkerError               a task could not be enqueued, run or read back
        ├── TaskNotFound          no task of that name is registered, or no record of that id
        ├── InvalidTaskArguments  the arguments do not fit the task's signature (also ValueError)
        ├── InvalidTaskResult     the result does not fit the annotation or is not JSON
        ├── InvalidSchedule       a cron expression, interval or timezone that is wrong (ValueError)
        ├── TaskFailed            handle.result(): the task ended in the dead-letter queue
        ├── TaskCancelled         handle.result(): the task was cancelled before it ran
        ├── ResultTimeout         handle.result(timeout): no outcome in time (also TimeoutError)
        ├── SoftTimeLimitExceeded raised inside a task when its soft time limit passes
        └── HardTimeLimitExceeded recorded when the worker abandoned a task at its hard limit

A task's own exceptions are never wrapped: they are recorded on the task as
``"TypeName: message"`` with the traceback, retried under the task's
:class:`~dtpyfw.core.retry.RetryPolicy`, then dead-lettered.
"""

from __future__ import annotations

__all__ = [
    "HardTimeLimitExceeded",
    "InvalidSchedule",
    "InvalidTaskArguments",
    "InvalidTaskResult",
    "ResultTimeout",
    "SoftTimeLimitExceeded",
    "TaskCancelled",
    "TaskFailed",
    "TaskNotFound",
    "WorkerError",
]

from dtpyfw.core.errors import DtpyfwError


class WorkerError(DtpyfwError):
    """A task could not be enqueued, run or read back."""

    http_status = 503
    problem_type = "worker-error"


class TaskNotFound(WorkerError):
    """No task is registered under that name, or no record exists for that task id."""

    http_status = 404
    problem_type = "not-found"


class InvalidTaskArguments(WorkerError, ValueError):
    """The arguments do not bind to the task's signature or fail its annotations."""

    http_status = 422
    problem_type = "invalid-task-arguments"


class InvalidTaskResult(WorkerError):
    """The value a task returned fails its return annotation or is not JSON-serialisable."""


class InvalidSchedule(WorkerError, ValueError):
    """A cron expression, interval or timezone that cannot describe a schedule."""


class TaskFailed(WorkerError):
    """The task failed on its last attempt and went to the dead-letter queue.

    ``error`` is the last attempt's ``"TypeName: message"``; ``attempts`` how many ran.
    """

    def __init__(self, task_id: str, name: str, error: str | None, attempts: int) -> None:
        self.task_id = task_id
        self.error = error
        self.attempts = attempts
        super().__init__(f"task {name!r} ({task_id}) failed after {attempts} attempt(s): {error}")


class TaskCancelled(WorkerError):
    """The task was cancelled while it waited in its queue; it never ran."""


class ResultTimeout(WorkerError, TimeoutError):
    """``handle.result(timeout)`` saw no outcome within ``timeout`` seconds."""


class SoftTimeLimitExceeded(WorkerError):
    """Raised inside a running task when its soft time limit passes.

    Catch it to clean up; a task that lets it propagate fails (and is retried
    like any failure). Sync tasks see it at their next Python instruction, so a
    long call into C (a blocking socket read) delays it until the call returns.
    """

    def __init__(self, message: str = "the task's soft time limit passed") -> None:
        super().__init__(message)


class HardTimeLimitExceeded(WorkerError):
    """Recorded on a task that was still running at its hard time limit.

    The worker stops waiting for it, records this failure (retried like any
    other) and goes on with a fresh slot; the abandoned call's outcome is ignored.
    """
