"""``dtpyfw consume`` as a real process over Redis streams: handles, then stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from dtpyfw.messaging import MessagingContainer, MessagingSettings
from dtpyfw.redis import RedisSettings

SYNC_MODULE = """
import time

from dependency_injector.wiring import Provide, inject

from dtpyfw.container import ServiceContainer
from dtpyfw.messaging import Handlers, Message

handlers = Handlers()


@handlers.handler("job.run", group="workers")
@inject
def run_job(message: Message, client=Provide[ServiceContainer.redis.client]) -> None:
    client.rpush("started", message.data["n"])
    deadline = time.monotonic() + 10
    while message.data.get("wait") and not client.exists("go"):
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.01)
    client.rpush("handled", message.data["n"])
"""

ASYNC_MODULE = """
from dependency_injector.wiring import Provide, inject

from dtpyfw.container import ServiceContainer
from dtpyfw.messaging import Handlers, Message

handlers = Handlers()


@handlers.handler("job.run", group="workers")
@inject
async def run_job(message: Message, client=Provide[ServiceContainer.redis.async_client]) -> None:
    await client.rpush("handled", message.data["n"])
"""


TASK_MODULE = """
from dtpyfw.messaging import Handlers, Message
from dtpyfw.worker import task

handlers = Handlers()


@task(name="job.follow_up")
def follow_up(n: int) -> None:
    pass


@handlers.handler("job.run", group="workers")
def run_job(message: Message) -> None:
    follow_up.delay(message.data["n"])  # as an API handler would
"""


class Consumer:
    """A ``dtpyfw consume`` process and its output."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, prefix: str, timeout: float = 30.0) -> None:
        """Wait until the process printed a line starting with ``prefix``."""
        wait_until(lambda: any(line.startswith(prefix) for line in self.lines), timeout)

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.01)


@pytest.fixture
def redis_url(messaging_redis_url: str) -> str:
    """The messaging tests' private Redis."""
    return messaging_redis_url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test database."""
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def start_consumer(
    tmp_path: Path, redis_url: str
) -> Iterator[Callable[..., tuple[Consumer, MessagingContainer]]]:
    """Start ``dtpyfw consume`` on a handler module; returns it and a publishing container."""
    started: list[tuple[Consumer, MessagingContainer]] = []

    def start(module_source: str, extra_config: str = "") -> tuple[Consumer, MessagingContainer]:
        name = f"jobs_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(module_source))
        config = tmp_path / "config.yaml"
        config.write_text(
            textwrap.dedent(
                f"""
                redis:
                  url: {redis_url}
                messaging:
                  transport: redis
                  poll_timeout: 0.2
                  shutdown_timeout: 20
                """
            )
            + extra_config
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
        process = subprocess.Popen(
            [sys.executable, "-m", "dtpyfw.cli", "consume", str(config), "--handlers", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        consumer = Consumer(process)
        publisher = MessagingContainer(
            settings=MessagingSettings(transport="redis"),
            redis_settings=RedisSettings.model_validate({"url": redis_url}),
        )
        started.append((consumer, publisher))
        return consumer, publisher

    yield start
    for consumer, publisher in started:
        if consumer.process.poll() is None:
            consumer.process.kill()
            consumer.process.wait()
        consumer._reader.join(5)
        assert consumer.process.stdout is not None
        consumer.process.stdout.close()
        publisher.shutdown_resources()


def test_consume_handles_then_stops_gracefully_on_sigterm(
    start_consumer: Callable[..., tuple[Consumer, MessagingContainer]], client: redis.Redis
) -> None:
    """SIGTERM lets the handler in flight finish and be acknowledged before a clean exit."""
    consumer, publisher = start_consumer(SYNC_MODULE)
    consumer.wait_for_line("consuming with 1 handler(s)")
    bus = publisher.bus()
    for n in range(3):
        bus.publish("job.run", {"n": n})
    wait_until(lambda: client.llen("handled") == 3)
    bus.publish("job.run", {"n": 99, "wait": True})
    wait_until(lambda: b"99" in client.lrange("started", 0, -1))
    consumer.process.send_signal(signal.SIGTERM)
    client.set("go", 1)  # the handler in flight may finish now; the process must wait for it
    assert consumer.process.wait(timeout=30) == 0, "\n".join(consumer.lines)
    assert sorted(client.lrange("handled", 0, -1)) == [b"0", b"1", b"2", b"99"]
    assert client.xpending("job.run", "workers")["pending"] == 0
    assert consumer.lines[-1] == "stopped"


def test_consume_runs_async_handlers(
    start_consumer: Callable[..., tuple[Consumer, MessagingContainer]], client: redis.Redis
) -> None:
    """A module with async handlers is served by the async bus and runner."""
    consumer, publisher = start_consumer(ASYNC_MODULE)
    consumer.wait_for_line("consuming with 1 handler(s)")
    assert "(async)" in consumer.lines[-1]
    for n in range(3):
        publisher.bus().publish("job.run", {"n": n})
    wait_until(lambda: client.llen("handled") == 3)
    assert consumer.stop() == 0, "\n".join(consumer.lines)


def test_consume_without_handlers_is_an_error(
    start_consumer: Callable[..., tuple[Consumer, MessagingContainer]],
) -> None:
    """A module defining no Handlers makes consume exit 1 with a hint."""
    consumer, _publisher = start_consumer("x = 1\n")
    assert consumer.process.wait(timeout=30) == 1
    consumer._reader.join(5)
    assert any("no dtpyfw.messaging.Handlers found" in line for line in consumer.lines)


def test_handlers_can_enqueue_tasks_as_in_the_api_process(
    start_consumer: Callable[..., tuple[Consumer, MessagingContainer]], redis_url: str
) -> None:
    """consume initialises the container's resources: task.delay() finds the bound queue."""
    from dtpyfw.worker import RedisBroker, TaskQueue, WorkerSettings

    namespace = f"c{uuid.uuid4().hex[:8]}"
    consumer, publisher = start_consumer(
        TASK_MODULE, f"worker:\n  strategy: redis\n  namespace: {namespace}\n"
    )
    consumer.wait_for_line("consuming with 1 handler(s)")
    for n in range(3):
        publisher.bus().publish("job.run", {"n": n})
    settings = WorkerSettings(strategy="redis", namespace=namespace)
    queue = TaskQueue(
        RedisBroker(settings, RedisSettings.model_validate({"url": redis_url})), settings
    )
    try:

        def enqueued() -> int:
            return sum(row.enqueued for row in queue.stats())

        wait_until(lambda: enqueued() == 3)
    finally:
        queue.close()
    assert consumer.stop() == 0, "\n".join(consumer.lines)
    assert not any("no task queue" in line.lower() for line in consumer.lines), consumer.lines
