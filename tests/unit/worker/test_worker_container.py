"""The worker subsystem in the ServiceContainer: strategies by settings, binding, lifecycle."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import dtpyfw.worker
from dtpyfw.config import Settings, load_settings
from dtpyfw.container import ServiceContainer, ServiceContainerInstance
from dtpyfw.core.errors import ConfigError, NotConfigured
from dtpyfw.testing import closing_container, embedded_settings
from dtpyfw.worker import (
    InlineBroker,
    KafkaBroker,
    MemoryBroker,
    TaskQueue,
    TaskRegistry,
    WorkerError,
    current_queue,
    task,
)
from dtpyfw.worker._kafka import band_of, topic_for

REGISTRY = TaskRegistry()


@task(name="square", registry=REGISTRY)
def square(value: int) -> int:
    return value * value


@task(name="asquare", registry=REGISTRY)
async def asquare(value: int) -> int:
    return value * value


def build(tmp_path: Path, **worker: object) -> Iterator[ServiceContainerInstance]:
    settings = embedded_settings(tmp_path, worker=worker)
    with (
        closing_container(settings) as container,
        container.override(worker__registry=REGISTRY),
    ):
        yield container


@pytest.fixture
def threads(tmp_path: Path) -> Iterator[ServiceContainerInstance]:
    yield from build(tmp_path, strategy="threads", concurrency=2, poll_interval=0.05)


def test_absent_section_is_not_configured() -> None:
    """Without `worker:` the subsystem is off and resolving it names the section to add."""
    container = ServiceContainer.from_settings(Settings())
    container.validate()
    assert container.subsystems["worker"] is False
    with pytest.raises(NotConfigured, match="add a `worker:` section"):
        container.worker.queue()
    with pytest.raises(WorkerError, match="no TaskQueue is bound"):
        current_queue()


def test_threads_strategy_runs_tasks_in_this_process(threads: ServiceContainerInstance) -> None:
    """Starting the container binds the queue and starts the embedded worker."""
    with threads.running():
        queue = threads.worker.queue()
        assert isinstance(queue.broker, MemoryBroker)
        assert current_queue() is queue
        handles = [square.delay(n) for n in range(10)] + [asquare.delay(5)]
        assert [h.result(timeout=5) for h in handles] == [n * n for n in range(10)] + [25]
        assert threads.health().ok
        embedded = queue.embedded
        assert embedded is not None
        assert embedded.started
    assert embedded.liveness().error == "stopped"
    with pytest.raises(WorkerError, match="no TaskQueue is bound"):
        current_queue()


async def test_asyncio_strategy_runs_on_the_services_loop(tmp_path: Path) -> None:
    """ainit_resources starts the asyncio pool on the running loop; aclose drains it."""
    settings = embedded_settings(tmp_path, worker={"strategy": "asyncio", "poll_interval": 0.05})
    container = ServiceContainer.from_settings(settings)
    with container.override(worker__registry=REGISTRY):
        async with container.arunning():
            queue = container.worker.queue()
            assert queue.embedded is not None
            assert queue.embedded.started
            handle = await asquare.adelay(7)
            assert await handle.aresult(timeout=5) == 49
            assert await (await square.adelay(3)).aresult(timeout=5) == 9
            assert (await container.ahealth()).ok
            embedded = queue.embedded
    assert embedded.liveness().error == "stopped"  # ashutdown_resources drained it


def test_strategy_is_a_settings_change(tmp_path: Path) -> None:
    """DTPYFW_WORKER__STRATEGY swaps the broker with no code change."""
    config = tmp_path / "config.yaml"
    config.write_text("worker:\n  strategy: threads\n")
    env = {"DTPYFW_WORKER__STRATEGY": "inline"}
    settings = load_settings(config, env=env, env_file=None)
    container = ServiceContainer.from_settings(settings)
    with container.override(worker__registry=REGISTRY), container.running():
        assert isinstance(container.worker.broker(), InlineBroker)
        assert square.delay(4).status().value == "succeeded"


def test_redis_strategy_without_a_redis_section_fails_at_start(tmp_path: Path) -> None:
    """The error says which section is missing, before any task is enqueued."""
    settings = embedded_settings(tmp_path, worker={"strategy": "redis"})
    container = ServiceContainer.from_settings(settings)
    container.validate()
    with pytest.raises(ConfigError, match="no `redis:` section"):
        container.init_resources()


def test_kafka_strategy_names_each_missing_section(tmp_path: Path) -> None:
    """kafka needs the kafka section (where records go) and redis (where state lives)."""
    settings = embedded_settings(tmp_path, worker={"strategy": "kafka"})
    container = ServiceContainer.from_settings(settings)
    with pytest.raises(ConfigError, match="no `kafka:` section"):
        container.init_resources()
    settings = embedded_settings(
        tmp_path, worker={"strategy": "kafka"}, kafka={"bootstrap_servers": ["127.0.0.1:1"]}
    )
    container = ServiceContainer.from_settings(settings)
    with pytest.raises(ConfigError, match="strategy is 'kafka' but the settings have no `redis:`"):
        container.init_resources()


def test_kafka_strategy_selects_the_kafka_broker(tmp_path: Path) -> None:
    """Switching to kafka is settings only; building the broker connects nothing."""
    settings = embedded_settings(
        tmp_path,
        worker={"strategy": "kafka", "namespace": "shop"},
        kafka={"bootstrap_servers": ["127.0.0.1:1"]},
        redis={"url": "redis://127.0.0.1:1/0"},
    )
    broker = ServiceContainer.from_settings(settings).worker.broker()
    assert isinstance(broker, KafkaBroker)
    assert broker.group == "shop.workers"
    assert topic_for("shop", "mail", 9) == "shop.tasks.mail.high"
    assert [band_of(p)[0] for p in range(10)] == ["low"] * 4 + ["normal"] * 3 + ["high"] * 3
    assert [band_of(p)[1] for p in (0, 3, 4, 6, 7, 9)] == [4, 4, 7, 7, 10, 10]


def test_bind_overrides_the_container_queue(threads: ServiceContainerInstance) -> None:
    """queue.bind() and apply(using=...) pick another queue for a block or a call."""
    inline = TaskQueue(InlineBroker(registry=REGISTRY), registry=REGISTRY)
    with threads.running():
        with inline.bind():
            assert square.delay(2).status().value == "succeeded"
        assert square.apply((3,), using=inline).result(timeout=0) == 9
        assert current_queue() is threads.worker.queue()


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, names every public attribute, and each name resolves."""
    module = dtpyfw.worker
    public = {name for name in vars(module) if name.isidentifier() and not name.startswith("_")}
    assert module.__all__ == sorted(module.__all__)
    assert public <= set(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None
    assert set(module.__all__) <= set(dir(module))


def test_package_imports_and_runs_inline_without_redis() -> None:
    """Without redis-py the package imports and runs; the redis strategy names the extra."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["redis"] = None  # makes "import redis" raise ImportError
        from dtpyfw.core.errors import DependencyMissing
        from dtpyfw.worker import (
            InlineBroker, RedisBroker, TaskQueue, TaskRegistry, WorkerSettings, task,
        )
        from dtpyfw.redis import RedisSettings

        registry = TaskRegistry()
        double = task(name="double", registry=registry)(lambda x: 2 * x)
        queue = TaskQueue(InlineBroker(registry=registry), registry=registry)
        assert queue.enqueue(double, (2,)).result(timeout=0) == 4
        try:
            RedisBroker(WorkerSettings(strategy="redis"), RedisSettings())
        except DependencyMissing as exc:
            assert "pip install 'dtpyfw[redis]'" in str(exc), exc
        else:
            raise AssertionError("no DependencyMissing")
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
