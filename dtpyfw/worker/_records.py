"""What a task looks like on the wire and at rest: envelope, state, outcome and counters.

A task travels as a :class:`TaskMessage`, the messaging envelope
(:class:`~dtpyfw.messaging.Message`, CloudEvents attributes plus
``traceparent`` and ``correlation_id``) whose ``type`` is the task name and
whose ``data`` is ``{"args": [...], "kwargs": {...}}`` in JSON form, with the
queue, priority and scheduling fields added as CloudEvents extensions.
"""

from __future__ import annotations

__all__ = [
    "Delivery",
    "Outcome",
    "QueueStats",
    "TaskInfo",
    "TaskMessage",
    "TaskState",
    "WorkerInfo",
]

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from dtpyfw.core.errors import MessagingError
from dtpyfw.messaging._message import Message
from dtpyfw.worker._errors import InvalidTaskArguments

TASK_SOURCE = "/dtpyfw/worker"


class TaskMessage(Message):
    """One enqueued task: the messaging envelope with the task's routing fields."""

    queue: str = Field(default="default", min_length=1)
    priority: int = Field(default=5, ge=0, le=9)
    idempotency_key: str | None = None
    #: The schedule that enqueued it, and the tick it fired for.
    schedule: str | None = None
    tick: AwareDatetime | None = None

    @property
    def args(self) -> list[Any]:
        """The positional arguments, in JSON form."""
        data = self.data if isinstance(self.data, dict) else {}
        args = data.get("args", [])
        return list(args) if isinstance(args, list) else []

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments, in JSON form."""
        data = self.data if isinstance(self.data, dict) else {}
        kwargs = data.get("kwargs", {})
        return dict(kwargs) if isinstance(kwargs, dict) else {}

    def encode(self) -> str:
        """The envelope as JSON text; arguments that are not JSON raise InvalidTaskArguments."""
        try:
            return self.to_json().decode()
        except MessagingError as exc:
            raise InvalidTaskArguments(f"task {self.type!r}: {exc}") from exc

    @classmethod
    def decode(cls, raw: str | bytes) -> TaskMessage:
        """Parse an envelope; a malformed one raises MessagingError."""
        return cls.from_json(raw)


class TaskState(StrEnum):
    """Where a task is in its life."""

    QUEUED = "queued"  # waiting in its queue
    DELAYED = "delayed"  # waiting for its eta (delay=, eta=) or its next retry
    RUNNING = "running"  # taken by a worker
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # failed on its last attempt: in the dead-letter queue
    CANCELLED = "cancelled"  # cancelled while it waited; never ran
    UNKNOWN = "unknown"  # never enqueued here, or its record expired

    @property
    def finished(self) -> bool:
        """True for states a task never leaves by itself (succeeded, dead, cancelled)."""
        return self in (TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED)


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A snapshot of one task's record."""

    id: str
    name: str
    queue: str
    priority: int
    state: TaskState
    #: The attempt running or next to run (1 for the first).
    attempt: int
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: The last failure, ``"TypeName: message"``, and its traceback.
    error: str | None = None
    traceback: str | None = None
    #: The result as JSON text (decode it with the task's return annotation).
    result_json: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for ``dtpyfw worker dlq list --json``)."""
        return {
            "id": self.id,
            "name": self.name,
            "queue": self.queue,
            "priority": self.priority,
            "state": self.state.value,
            "attempt": self.attempt,
            "enqueued_at": _iso(self.enqueued_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "error": self.error,
            "args": self.args,
            "kwargs": self.kwargs,
            "result": None if self.result_json is None else json.loads(self.result_json),
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """A task handed to one worker: its envelope, which attempt this is, and its lease."""

    id: str
    message: TaskMessage
    attempt: int
    #: Identifies this delivery; finishing with a stale token is ignored.
    token: str
    enqueued_ms: int = 0
    #: Why the stored envelope could not be read (the task then goes to the dead letters).
    problem: str | None = None

    @property
    def queue(self) -> str:
        """The queue the task came from."""
        return self.message.queue

    @property
    def priority(self) -> int:
        """The task's priority."""
        return self.message.priority


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, as the broker records it.

    ``ok`` stores ``result`` (JSON text); ``retry`` puts the task back after
    ``delay`` seconds as attempt ``attempt + 1``; ``dead`` sends it to the
    dead-letter queue; ``release`` puts it back untouched (a worker stopping).
    """

    kind: Literal["ok", "retry", "dead", "release"]
    result: str | None = None
    error: str | None = None
    traceback: str | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts for one queue and priority.

    ``queued``, ``delayed``, ``running`` and ``dead`` are what is there now;
    the others count events since the counters were created.
    """

    queue: str
    priority: int
    queued: int = 0
    delayed: int = 0
    running: int = 0
    dead: int = 0
    enqueued: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    cancelled: int = 0
    redelivered: int = 0
    redriven: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


#: Counter names as brokers store them (``QueueStats`` field names).
COUNTERS = (
    "enqueued",
    "succeeded",
    "failed",
    "retried",
    "dead_lettered",
    "cancelled",
    "redelivered",
    "redriven",
)
GAUGES = ("delayed", "running", "dead")


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker's heartbeat: who it is, what it serves, how it is doing."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: datetime
    beat_at: datetime
    running: int = 0
    processed: int = 0
    state: str = "running"

    def to_json(self) -> str:
        """The heartbeat as JSON text."""
        return json.dumps(
            {
                "id": self.id,
                "host": self.host,
                "pid": self.pid,
                "queues": list(self.queues),
                "concurrency": self.concurrency,
                "started_at": self.started_at.isoformat(),
                "beat_at": self.beat_at.isoformat(),
                "running": self.running,
                "processed": self.processed,
                "state": self.state,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> WorkerInfo:
        """Parse a heartbeat written by :meth:`to_json`."""
        data = json.loads(raw)
        return cls(
            id=data["id"],
            host=data["host"],
            pid=int(data["pid"]),
            queues=tuple(data["queues"]),
            concurrency=int(data["concurrency"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            beat_at=datetime.fromisoformat(data["beat_at"]),
            running=int(data.get("running", 0)),
            processed=int(data.get("processed", 0)),
            state=str(data.get("state", "running")),
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        data: dict[str, Any] = json.loads(self.to_json())
        return data


def from_ms(value: int | float | str | bytes | None) -> datetime | None:
    """A UTC datetime from epoch milliseconds (None, empty and 0 give None)."""
    seconds = None if value is None or value in (b"", "") else float(value) / 1000
    return from_seconds(seconds)


def from_seconds(value: int | float | str | bytes | None) -> datetime | None:
    """A UTC datetime from epoch seconds (None, empty and 0 give None)."""
    if value is None or value in (b"", ""):
        return None
    number = float(value)
    return datetime.fromtimestamp(number, UTC) if number else None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
