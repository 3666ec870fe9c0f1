"""Declaring tasks: ``@task``, the registry that finds them by name, and their signatures.

A task is a plain function, sync or async. Its dependencies come from the
container with dependency-injector's own markers, so the worker calls it with
the task's arguments only::

    from dtpyfw.container import Provide, ServiceContainer, inject
    from dtpyfw.worker import task

    @task(name="notes.index", queue="search", priority="high", timeout=30)
    @inject
    def index_note(note_id: int, store: Storage = Provide[ServiceContainer.storage.store]) -> int:
        ...

    handle = index_note.delay(42)          # or index_note.apply((42,), priority=9, delay=5)
    handle.result(timeout=10)              # -> int, validated by the annotation

Put ``@task`` outermost; a function with ``Provide[...]`` defaults and no
``@inject`` is injected for you. Parameters with a ``Provide``/``Provider``
marker (as default or in ``Annotated``) are dependencies, never sent over the
wire; the others are the task's arguments. Annotated arguments and the
annotated result are validated and converted by pydantic: a model, datetime
or UUID goes over the wire as JSON and comes back as itself.
"""

from __future__ import annotations

__all__ = [
    "Task",
    "TaskContext",
    "TaskRegistry",
    "current_queue",
    "current_task",
    "default_registry",
    "schedule",
    "task",
]

import functools
import inspect
import threading
import typing
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
)

from dependency_injector import wiring
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from dtpyfw.core.retry import RetryPolicy
from dtpyfw.worker._errors import (
    InvalidTaskArguments,
    InvalidTaskResult,
    TaskNotFound,
    WorkerError,
)
from dtpyfw.worker._priority import PriorityLike, parse_priority
from dtpyfw.worker._settings import Schedule

if TYPE_CHECKING:
    from dtpyfw.worker._queue import TaskHandle, TaskQueue

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

#: A task's idempotency key: a template of its argument names (``"mail:{to}"``)
#: or a function of its arguments returning the key.
IdempotencyKey = str | Callable[..., str]
_ANY: Any = TypeAdapter(Any)


@dataclass(frozen=True, slots=True)
class TaskContext:
    """The task running in this thread or asyncio task (see :func:`current_task`)."""

    id: str
    name: str
    queue: str
    priority: int
    #: 1 for the first try; ``max_attempts`` is the task's RetryPolicy.attempts.
    attempt: int
    max_attempts: int
    #: The schedule that enqueued it and the tick it fired for, if any.
    schedule: str | None = None
    tick: datetime | None = None


_current_task: ContextVar[TaskContext | None] = ContextVar("dtpyfw_current_task", default=None)


def current_task() -> TaskContext | None:
    """The task being run here, or None outside a task."""
    return _current_task.get()


class Task(Generic[P, R]):
    """A function registered as a task: call it directly, or enqueue it with ``delay``.

    ``queue``/``priority``/``retry``/``timeout``/``soft_timeout`` left as None
    take the ``worker`` settings' defaults when the task runs.
    """

    def __init__(
        self,
        fn: Callable[P, Any],
        *,
        name: str,
        queue: str | None = None,
        priority: PriorityLike | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        soft_timeout: float | None = None,
        idempotency_key: IdempotencyKey | None = None,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise WorkerError(f"task {name!r}: timeout must be positive, not {timeout!r}")
        if soft_timeout is not None and soft_timeout <= 0:
            raise WorkerError(f"task {name!r}: soft_timeout must be positive, not {soft_timeout!r}")
        self.fn = fn
        self.name = name
        self.queue = queue
        self.priority = None if priority is None else parse_priority(priority)
        self.retry = retry
        self.timeout = timeout
        self.soft_timeout = soft_timeout
        self.idempotency_key = idempotency_key
        self.is_async = _is_async(fn)
        self._signature: _Signature | None = None
        self._signature_lock = threading.Lock()
        functools.update_wrapper(self, fn)  # name, doc, module

    def __repr__(self) -> str:
        return f"<Task {self.name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run the function here and now, as if it were not a task."""
        return self.fn(*args, **kwargs)

    # -- enqueueing ------------------------------------------------------------------
    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """Enqueue a call with these arguments on the bound :class:`TaskQueue`."""
        return current_queue().enqueue(self, args, kwargs)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """Async twin of :meth:`delay`."""
        return await current_queue().aenqueue(self, args, kwargs)

    def apply(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: PriorityLike | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        idempotency_key: str | None = None,
        using: TaskQueue | None = None,
    ) -> TaskHandle[R]:
        """Enqueue with options: another queue or priority, a ``delay`` or an ``eta``.

        ``using`` picks a TaskQueue other than the bound one.
        """
        return (using or current_queue()).enqueue(
            self,
            args,
            kwargs,
            queue=queue,
            priority=priority,
            delay=delay,
            eta=eta,
            idempotency_key=idempotency_key,
        )

    async def aapply(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: PriorityLike | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        idempotency_key: str | None = None,
        using: TaskQueue | None = None,
    ) -> TaskHandle[R]:
        """Async twin of :meth:`apply`."""
        return await (using or current_queue()).aenqueue(
            self,
            args,
            kwargs,
            queue=queue,
            priority=priority,
            delay=delay,
            eta=eta,
            idempotency_key=idempotency_key,
        )

    # -- the wire format -------------------------------------------------------------
    def encode_arguments(
        self, args: Sequence[Any], kwargs: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """``{"args": [...], "kwargs": {...}}`` in JSON form, validated by the annotations.

        Raises InvalidTaskArguments naming every argument that does not fit.
        """
        return self.signature().encode(args, kwargs or {})

    def decode_arguments(self, data: object) -> tuple[list[Any], dict[str, Any]]:
        """The call's ``(args, kwargs)`` from the JSON form, validated by the annotations."""
        return self.signature().decode(data)

    def encode_result(self, value: Any) -> str:
        """The result as JSON text; InvalidTaskResult if it fails its annotation or JSON."""
        return self.signature().encode_result(value)

    def decode_result(self, text: str) -> R:
        """The result read back from JSON text, validated by the return annotation."""
        value: R = self.signature().decode_result(text)
        return value

    def key_for(
        self, args: Sequence[Any], kwargs: Mapping[str, Any] | None, given: str | None = None
    ) -> str | None:
        """The idempotency key of a call: ``given``, else the task's template or function."""
        if given is not None:
            return given
        if self.idempotency_key is None:
            return None
        if callable(self.idempotency_key):
            return str(self.idempotency_key(*args, **(kwargs or {})))
        try:
            bound = self.signature().signature.bind(*args, **(kwargs or {}))
        except TypeError as exc:
            raise InvalidTaskArguments(f"task {self.name!r}: {exc}") from None
        bound.apply_defaults()
        try:
            return self.idempotency_key.format(**bound.arguments)
        except (KeyError, IndexError) as exc:
            raise WorkerError(
                f"task {self.name!r}: idempotency_key {self.idempotency_key!r} names "
                f"{exc}, which is not one of its arguments"
            ) from None

    def signature(self) -> _Signature:
        """The task's arguments and result as pydantic sees them (built on first use)."""
        found = self._signature
        if found is None:
            with self._signature_lock:
                found = self._signature
                if found is None:
                    found = self._signature = _Signature(self.name, self.fn)
        return found


class TaskRegistry:
    """Tasks by name and the schedules declared in code.

    The worker looks a task up here by the name in its message; ``@task``
    registers into :data:`default_registry` unless given another.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._schedules: dict[str, Schedule] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<TaskRegistry {len(self._tasks)} task(s), {len(self._schedules)} schedule(s)>"

    def register(self, task: Task[Any, Any]) -> None:
        """Add ``task``; another function under a name already taken is a WorkerError.

        Registering the same function again (a module imported twice) replaces it.
        """
        with self._lock:
            current = self._tasks.get(task.name)
            if current is not None and _origin(current.fn) != _origin(task.fn):
                raise WorkerError(
                    f"task name {task.name!r} is already registered to {_origin(current.fn)}; "
                    f"give {_origin(task.fn)} another name"
                )
            self._tasks[task.name] = task

    def unregister(self, name: str) -> None:
        """Forget the task ``name`` (a missing one is ignored)."""
        with self._lock:
            self._tasks.pop(name, None)

    def get(self, name: str) -> Task[Any, Any]:
        """The task ``name``; an unknown name raises TaskNotFound listing the known ones."""
        try:
            return self._tasks[name]
        except KeyError:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise TaskNotFound(
                f"no task named {name!r} is registered in this process (known: {known}); "
                "import the module that declares it (dtpyfw worker run --tasks MODULE)"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task[Any, Any]]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def add_schedule(self, schedule: Schedule) -> Schedule:
        """Declare a schedule in code; another schedule under the same name is a WorkerError."""
        with self._lock:
            current = self._schedules.get(schedule.name)
            if current is not None and current != schedule:
                raise WorkerError(f"schedule {schedule.name!r} is already declared differently")
            self._schedules[schedule.name] = schedule
        return schedule

    def remove_schedule(self, name: str) -> None:
        """Forget the schedule ``name`` (a missing one is ignored)."""
        with self._lock:
            self._schedules.pop(name, None)

    def schedules(self) -> list[Schedule]:
        """The schedules declared in code, in declaration order."""
        return list(self._schedules.values())


#: Where ``@task`` and :func:`schedule` register unless told otherwise.
default_registry = TaskRegistry()


class _TaskDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R_co]], /) -> Task[P, R_co]: ...
    @overload
    def __call__(self, fn: Callable[P, R_co], /) -> Task[P, R_co]: ...


@overload
def task(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: PriorityLike | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    soft_timeout: float | None = None,
    idempotency_key: IdempotencyKey | None = None,
    registry: TaskRegistry | None = None,
) -> _TaskDecorator: ...
def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: PriorityLike | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    soft_timeout: float | None = None,
    idempotency_key: IdempotencyKey | None = None,
    registry: TaskRegistry | None = None,
) -> Any:
    """Declare a function as a task and register it (in :data:`default_registry`).

    Args:
        name: the name messages carry (default ``module.qualname``); keep it stable.
        queue: the queue it goes to (default: ``worker.default_queue``).
        priority: 0 (low) to 9 (high), or ``"low"``/``"normal"``/``"high"``.
        retry: tries and backoff before the dead-letter queue (default: ``worker.retry``).
        timeout: hard limit, seconds: the worker abandons the run and records a failure.
        soft_timeout: soft limit, seconds: SoftTimeLimitExceeded is raised inside the task.
        idempotency_key: ``"template {arg}"`` or a function of the arguments; while a
            key is remembered (``worker.idempotency_ttl``) enqueueing it again returns
            the first task's handle instead of a new task.
    """

    def decorate(function: Callable[..., Any]) -> Task[Any, Any]:
        if isinstance(function, Task):
            raise WorkerError(f"{function!r} is already a task")
        declared: Task[Any, Any] = Task(
            _injected(function),
            name=name or f"{function.__module__}.{function.__qualname__}",
            queue=queue,
            priority=priority,
            retry=retry,
            timeout=timeout,
            soft_timeout=soft_timeout,
            idempotency_key=idempotency_key,
        )
        (registry if registry is not None else default_registry).register(declared)
        return declared

    if fn is not None:
        return decorate(fn)
    return decorate


def schedule(
    task: Task[Any, Any] | str,
    *,
    every: float | timedelta | None = None,
    cron: str | None = None,
    name: str | None = None,
    timezone: str = "UTC",
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: PriorityLike | None = None,
    catch_up: Literal["skip", "once", "all"] = "once",
    registry: TaskRegistry | None = None,
) -> Schedule:
    """Declare in code that ``task`` runs ``every`` N seconds or on a ``cron`` expression.

    Every worker with ``worker.scheduler`` on runs the schedules; each tick
    fires once however many run. ``name`` defaults to the task's name.
    """
    task_name = task if isinstance(task, str) else task.name
    if isinstance(every, timedelta):
        every = every.total_seconds()
    declared = Schedule(
        name=name or task_name,
        task=task_name,
        every=every,
        cron=cron,
        timezone=timezone,
        args=list(args),
        kwargs=dict(kwargs or {}),
        queue=queue,
        priority=None if priority is None else parse_priority(priority),
        catch_up=catch_up,
    )
    return (registry if registry is not None else default_registry).add_schedule(declared)


# -- the queue that .delay() uses -----------------------------------------------------------

_bound: list[TaskQueue] = []
_bound_lock = threading.Lock()


def current_queue() -> TaskQueue:
    """The TaskQueue ``.delay()`` uses: the one bound last (the container binds its own)."""
    with _bound_lock:
        if _bound:
            return _bound[-1]
    raise WorkerError(
        "no TaskQueue is bound: start the container with a `worker:` section "
        "(container.init_resources() or container.worker.queue()), or pass using=queue"
    )


def bind_queue(queue: TaskQueue) -> None:
    """Make ``queue`` the one ``.delay()`` uses until :func:`unbind_queue`."""
    with _bound_lock:
        _bound.append(queue)


def unbind_queue(queue: TaskQueue) -> None:
    """Undo :func:`bind_queue` for ``queue`` (wherever it is in the stack)."""
    with _bound_lock:
        for index in range(len(_bound) - 1, -1, -1):
            if _bound[index] is queue:
                del _bound[index]
                return


# -- signatures -------------------------------------------------------------------------------

_KIND = inspect.Parameter


class _Signature:
    """The wire-facing signature of a task: its arguments without the injected ones."""

    def __init__(self, task_name: str, fn: Callable[..., Any]) -> None:
        self.task_name = task_name
        target = inspect.unwrap(fn)
        try:
            hints = typing.get_type_hints(target, include_extras=True)
        except Exception as exc:
            raise WorkerError(
                f"task {task_name!r}: cannot resolve its annotations: {type(exc).__name__}: {exc}"
            ) from exc
        full = inspect.signature(target)
        kept: list[inspect.Parameter] = []
        self.adapters: dict[str, TypeAdapter[Any] | None] = {}
        injected_before_varargs = False
        for param in full.parameters.values():
            if _is_injected(param):
                injected_before_varargs = True
                continue
            if param.kind is _KIND.VAR_POSITIONAL and injected_before_varargs:
                raise WorkerError(
                    f"task {task_name!r}: injected parameters must come after *{param.name}"
                )
            kept.append(param)
            self.adapters[param.name] = _adapter_for(param, hints.get(param.name))
        self.signature = full.replace(parameters=kept)
        self.has_varargs = any(p.kind is _KIND.VAR_POSITIONAL for p in kept)
        self.returns: Any = hints.get("return", Any)
        self.annotated_result = "return" in hints and self.returns is not Any
        self.result_adapter: TypeAdapter[Any] = (
            TypeAdapter(self.returns) if self.annotated_result else _ANY
        )

    def encode(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        bound = self._bind(args, kwargs)
        out: dict[str, Any] = {}
        problems: list[str] = []
        for name, value in bound.arguments.items():
            adapter = self.adapters[name]
            try:
                if adapter is None:
                    out[name] = to_jsonable_python(value)
                else:
                    out[name] = adapter.dump_python(adapter.validate_python(value), mode="json")
            except ValidationError as exc:
                problems.append(_validation_problems(name, exc))
            except (PydanticSerializationError, TypeError, ValueError) as exc:
                problems.append(f"{name}: {type(value).__name__} is not JSON-serialisable ({exc})")
        if problems:
            raise InvalidTaskArguments(f"task {self.task_name!r}: " + "; ".join(problems))
        call_args, call_kwargs = self._split(out)
        return {"args": call_args, "kwargs": call_kwargs}

    def decode(self, data: object) -> tuple[list[Any], dict[str, Any]]:
        if not isinstance(data, dict):
            raise InvalidTaskArguments(
                f"task {self.task_name!r}: message data must be "
                f'{{"args": [...], "kwargs": {{...}}}}, not {type(data).__name__}'
            )
        raw_args, raw_kwargs = data.get("args", []), data.get("kwargs", {})
        if not isinstance(raw_args, list) or not isinstance(raw_kwargs, dict):
            raise InvalidTaskArguments(
                f"task {self.task_name!r}: `args` must be a list and `kwargs` an object"
            )
        bound = self._bind(raw_args, raw_kwargs)
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, value in bound.arguments.items():
            adapter = self.adapters[name]
            if adapter is None:
                values[name] = value
                continue
            try:
                values[name] = adapter.validate_python(value)
            except ValidationError as exc:
                problems.append(_validation_problems(name, exc))
        if problems:
            raise InvalidTaskArguments(f"task {self.task_name!r}: " + "; ".join(problems))
        return self._split(values)

    def encode_result(self, value: Any) -> str:
        try:
            if self.annotated_result:
                value = self.result_adapter.validate_python(value)
            return self.result_adapter.dump_json(value).decode()
        except ValidationError as exc:
            raise InvalidTaskResult(
                f"task {self.task_name!r} returned a {type(value).__name__} that does not match "
                f"its return annotation {_type_name(self.returns)}: "
                + _validation_problems("result", exc)
            ) from None
        except (PydanticSerializationError, TypeError, ValueError) as exc:
            raise InvalidTaskResult(
                f"task {self.task_name!r} returned a {type(value).__name__}, which is not "
                f"JSON-serialisable: {exc}"
            ) from None

    def decode_result(self, text: str) -> Any:
        try:
            return self.result_adapter.validate_json(text)
        except ValidationError as exc:
            raise InvalidTaskResult(
                f"stored result of task {self.task_name!r} does not match "
                f"{_type_name(self.returns)}: " + _validation_problems("result", exc)
            ) from None

    def _bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> inspect.BoundArguments:
        try:
            return self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidTaskArguments(f"task {self.task_name!r}: {exc}") from None

    def _split(self, values: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for a call (and for the wire)."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param in self.signature.parameters.values():
            if param.name not in values:
                continue
            value = values[param.name]
            if param.kind is _KIND.POSITIONAL_ONLY or (
                self.has_varargs and param.kind is _KIND.POSITIONAL_OR_KEYWORD
            ):
                args.append(value)
            elif param.kind is _KIND.VAR_POSITIONAL:
                args.extend(value)
            elif param.kind is _KIND.VAR_KEYWORD:
                kwargs.update(value)
            else:
                kwargs[param.name] = value
        return args, kwargs


def _adapter_for(param: inspect.Parameter, hint: Any) -> TypeAdapter[Any] | None:
    if hint is None:
        return None
    if param.kind is _KIND.VAR_POSITIONAL:
        return TypeAdapter(list[hint])
    if param.kind is _KIND.VAR_KEYWORD:
        return TypeAdapter(dict[str, hint])
    return TypeAdapter(hint)


def _is_injected(param: inspect.Parameter) -> bool:
    """Whether dependency-injector injects ``param`` (so it never travels).

    Asks dependency-injector itself, so both agree: a marker as the default, in a
    *live* ``Annotated[...]`` annotation (a string annotation, as under
    ``from __future__ import annotations``, is not looked into), or inside
    FastAPI's ``Depends(...)``.
    """
    extract = getattr(wiring, "_extract_marker", None)
    if extract is not None:
        return extract(param) is not None
    candidates: tuple[object, ...] = (param.default,)  # pragma: no cover - older releases
    if typing.get_origin(param.annotation) is typing.Annotated:
        candidates = typing.get_args(param.annotation)[1:]
    return any(getattr(type(c), "__IS_MARKER__", False) is True for c in candidates)


def _injected(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` itself, or ``inject(fn)`` when it has markers but no ``@inject``.

    dependency-injector's ``wire()`` binds every ``@inject`` function of a wired
    module even when the module attribute is the Task wrapping it.
    """
    target = inspect.unwrap(fn)
    if target is not fn:
        return fn  # already wrapped, by @inject or something else that keeps __wrapped__
    if any(_is_injected(p) for p in inspect.signature(target).parameters.values()):
        return cast("Callable[..., Any]", wiring.inject(fn))
    return cast("Callable[..., Any]", fn)


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(inspect.unwrap(fn))


def _origin(fn: Callable[..., Any]) -> str:
    target = inspect.unwrap(fn)
    return f"{target.__module__}.{target.__qualname__}"


def _validation_problems(name: str, exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(item) for item in (name, *error["loc"]))
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__qualname__", None) or repr(annotation)
