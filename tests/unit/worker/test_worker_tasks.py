"""Declaring tasks: names, registry, arguments and results on the wire, injection."""

# No `from __future__ import annotations` here: dependency-injector finds a marker in
# Annotated[...] only when the annotation is a live object, and one test shows that.
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from dtpyfw.container import Provide, ServiceContainer, ServiceContainerInstance, inject
from dtpyfw.core.retry import RetryPolicy
from dtpyfw.storage import Storage
from dtpyfw.testing import closing_container, embedded_settings
from dtpyfw.worker import (
    InvalidTaskArguments,
    InvalidTaskResult,
    Priority,
    Task,
    TaskRegistry,
    WorkerError,
    current_task,
    task,
)
from dtpyfw.worker._priority import parse_priority

REGISTRY = TaskRegistry()


class Note(BaseModel):
    title: str
    created: datetime


@task(name="notes.store", registry=REGISTRY)
@inject
def store_note(
    key: str, note: Note, store: Storage = Provide[ServiceContainer.storage.store]
) -> int:
    body = note.model_dump_json().encode()
    store.put(key, body)
    return len(body)


@task(name="notes.count", registry=REGISTRY)
def count_notes(
    prefix: str, store: Annotated[Storage, Provide[ServiceContainer.storage.store]]
) -> int:
    return sum(1 for _ in store.list(prefix))


@task(name="notes.describe", registry=REGISTRY, priority="high", queue="notes")
async def describe(note: Note) -> Note:
    context = current_task()
    assert context is not None
    return note.model_copy(update={"title": f"{note.title} ({context.name})"})


@pytest.fixture
def container(tmp_path: Path) -> Iterator[ServiceContainerInstance]:
    settings = embedded_settings(tmp_path, worker={"strategy": "inline"})
    with closing_container(settings) as built:
        built.wire(modules=[sys.modules[__name__]])
        with built.override(worker__registry=REGISTRY), built.running():
            yield built
        built.unwire()


def test_dependencies_come_from_the_container(container: ServiceContainerInstance) -> None:
    """@inject + Provide[...] fill the task's dependencies; only its arguments travel."""
    note = Note(title="hello", created=datetime(2024, 5, 1, tzinfo=UTC))
    handle = store_note.delay("notes/1", note)
    size = handle.result(timeout=5)
    assert container.storage.store().get("notes/1") == note.model_dump_json().encode()
    assert size == len(note.model_dump_json())
    info = handle.info()
    assert info is not None
    assert info.args == []
    assert set(info.kwargs) == {"key", "note"}


def test_annotated_provide_markers_are_dependencies_too(
    container: ServiceContainerInstance,
) -> None:
    """A marker inside Annotated[...] marks a dependency; the task was injected for us."""
    container.storage.store().put("a/1", b"x")
    container.storage.store().put("a/2", b"y")
    assert count_notes.delay("a/").result(timeout=5) == 2
    with pytest.raises(InvalidTaskArguments, match="unexpected keyword argument 'store'"):
        count_notes.encode_arguments((), {"prefix": "a/", "store": object()})


def test_async_task_result_comes_back_as_its_model(container: ServiceContainerInstance) -> None:
    """An async task's annotated result is validated, stored as JSON and rebuilt."""
    note = Note(title="n", created=datetime(2024, 5, 1, tzinfo=UTC))
    result = describe.delay(note).result(timeout=5)
    assert isinstance(result, Note)
    assert result.title == "n (notes.describe)"
    assert describe.is_async
    assert describe.priority == Priority.HIGH
    assert describe.queue == "notes"


def test_default_name_is_module_and_qualname() -> None:
    """Without name=, a task is named after its module and qualified name."""
    registry = TaskRegistry()

    @task(registry=registry)
    def ping() -> str:
        return "pong"

    assert ping.name == f"{__name__}.test_default_name_is_module_and_qualname.<locals>.ping"
    assert registry.get(ping.name) is ping
    assert ping() == "pong"  # calling the task runs the function here and now
    assert isinstance(ping, Task)


def test_bare_decorator_registers_in_the_default_registry() -> None:
    """@task with no arguments works and lands in the default registry."""
    from dtpyfw.worker import default_registry

    @task
    def bare() -> None:
        return None

    try:
        assert bare.name in default_registry
    finally:
        default_registry.unregister(bare.name)
    assert bare.name not in default_registry


def test_a_name_taken_by_another_function_is_refused() -> None:
    """Two functions under one name is an error; the same function again is not."""
    registry = TaskRegistry()

    def first() -> None: ...

    def second() -> None: ...

    registry.register(Task(first, name="job"))
    registry.register(Task(first, name="job"))
    with pytest.raises(WorkerError, match=r"already registered to .*first; give .*second"):
        registry.register(Task(second, name="job"))


def test_arguments_go_over_the_wire_as_json_and_come_back_typed() -> None:
    """Models, datetimes and UUIDs encode to JSON and decode to themselves."""
    registry = TaskRegistry()
    key = uuid.uuid4()

    @task(name="typed", registry=registry)
    def typed(ident: uuid.UUID, when: datetime, note: Note, *tags: str, **extra: int) -> None: ...

    when = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    note = Note(title="t", created=when)
    data = typed.encode_arguments((key, when, note, "a", "b"), {"x": 1})
    assert data == {
        "args": [str(key), "2024-01-02T03:04:00Z", note.model_dump(mode="json"), "a", "b"],
        "kwargs": {"x": 1},
    }
    args, kwargs = typed.decode_arguments(data)
    assert args == [key, when, note, "a", "b"]
    assert kwargs == {"x": 1}


def test_every_bad_argument_is_named() -> None:
    """Validation names each failing argument; binding errors read like Python's."""
    registry = TaskRegistry()

    @task(name="strict", registry=registry)
    def strict(count: int, when: datetime, label: str = "x") -> None: ...

    with pytest.raises(InvalidTaskArguments) as caught:
        strict.encode_arguments(("many", "yesterday"), {})
    text = str(caught.value)
    assert text.startswith("task 'strict': count: Input should be a valid integer")
    assert "when: Input should be a valid datetime" in text
    with pytest.raises(InvalidTaskArguments, match="missing a required argument: 'when'"):
        strict.encode_arguments((1,), {})
    with pytest.raises(InvalidTaskArguments, match="unexpected keyword argument 'colour'"):
        strict.encode_arguments((1, datetime.now(UTC)), {"colour": "red"})
    with pytest.raises(InvalidTaskArguments, match=r"message data must be"):
        strict.decode_arguments(["not", "a", "dict"])


def test_unannotated_arguments_must_be_json() -> None:
    """Without annotations anything JSON goes; an object that is not JSON is refused."""
    registry = TaskRegistry()

    @task(name="loose", registry=registry)
    def loose(value, other=None):  # type: ignore[no-untyped-def]
        return value

    assert loose.encode_arguments(({"a": [1, 2]},), {}) == {
        "args": [],
        "kwargs": {"value": {"a": [1, 2]}},
    }
    with pytest.raises(InvalidTaskArguments, match="value: object is not JSON-serialisable"):
        loose.encode_arguments((object(),), {})


def test_results_are_checked_against_the_return_annotation() -> None:
    """A result that fails its annotation, or is not JSON, is an InvalidTaskResult."""
    registry = TaskRegistry()

    @task(name="counted", registry=registry)
    def counted() -> int:
        return 0

    @task(name="anything", registry=registry)
    def anything():  # type: ignore[no-untyped-def]
        return None

    assert counted.encode_result(3) == "3"
    assert counted.decode_result("3") == 3
    with pytest.raises(InvalidTaskResult, match=r"returned a str that does not match .*int"):
        counted.encode_result("three")
    with pytest.raises(InvalidTaskResult, match="returned a object, which is not JSON"):
        anything.encode_result(object())
    assert anything.encode_result({"k": [1]}) == '{"k":[1]}'


def test_idempotency_keys_from_templates_and_functions() -> None:
    """A template fills in argument names (defaults included); a function gets the call."""
    registry = TaskRegistry()

    @task(name="mail", registry=registry, idempotency_key="{to}:{subject}")
    def mail(to: str, subject: str = "hi") -> None: ...

    @task(name="mail2", registry=registry, idempotency_key=lambda to, **_: to.lower())
    def mail2(to: str, subject: str = "hi") -> None: ...

    @task(name="mail3", registry=registry, idempotency_key="{missing}")
    def mail3(to: str) -> None: ...

    assert mail.key_for(("a@b",), {}) == "a@b:hi"
    assert mail.key_for(("a@b",), {}, given="mine") == "mine"
    assert mail2.key_for(("A@B",), {"subject": "x"}) == "a@b"
    with pytest.raises(WorkerError, match="names 'missing', which is not one of its arguments"):
        mail3.key_for(("a",), {})


def test_unresolvable_annotations_fail_at_first_use() -> None:
    """An annotation naming something undefined is reported with the task's name."""
    registry = TaskRegistry()

    @task(name="broken", registry=registry)
    def broken(value: "Undefined") -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(WorkerError, match="task 'broken': cannot resolve its annotations"):
        broken.encode_arguments((1,), {})


def test_task_options_are_checked() -> None:
    """Bad limits and re-decorating a task are refused at declaration."""
    registry = TaskRegistry()
    with pytest.raises(WorkerError, match="timeout must be positive"):
        task(name="t", registry=registry, timeout=0)(lambda: None)
    with pytest.raises(InvalidTaskArguments, match="priority must be a number from 0"):
        task(name="p", registry=registry, priority=10)(lambda: None)
    declared = task(name="ok", registry=registry, retry=RetryPolicy(attempts=1))(lambda: None)
    with pytest.raises(WorkerError, match="already a task"):
        task(name="again", registry=registry)(declared)


@pytest.mark.parametrize(
    ("given", "expected"),
    [(0, 0), (9, 9), ("low", 0), ("NORMAL", 5), (" high ", 9), ("7", 7), (Priority.HIGH, 9)],
)
def test_priorities_take_numbers_and_names(given: Any, expected: int) -> None:
    """0-9 as numbers or digit strings, and the names low/normal/high."""
    assert parse_priority(given) == expected


@pytest.mark.parametrize("given", [-1, 10, "urgent", True, None, 1.5])
def test_bad_priorities_are_refused(given: Any) -> None:
    """Anything else raises InvalidTaskArguments listing what is accepted."""
    with pytest.raises(InvalidTaskArguments, match="'low', 'normal', 'high'"):
        parse_priority(given)
