"""The worker subsystem as a dependency-injector container.

``broker`` is a ``Selector`` on ``settings.strategy``: switching from
``threads`` to ``redis`` is a change of settings (``DTPYFW_WORKER__STRATEGY=redis``),
never of code. The container takes the ``redis`` and ``kafka`` *settings*,
not those subsystems' providers, so a service without those sections
composes and starts as before; the brokers open their own connections on
first use.

``queue`` is a Resource: it binds itself as the queue ``task.delay()`` uses,
starts the in-process worker of the ``threads`` strategy (the ``asyncio``
one starts on the first event loop that enqueues, or at
``ainit_resources``), and at shutdown stops that worker and closes the
broker. ``aclose_queue`` is an async Resource whose only job, at
``ashutdown_resources``, is to let an embedded asyncio worker finish its
running tasks and close the asyncio Redis client. ``worker`` builds a
:class:`~dtpyfw.worker.Worker` on the queue for a worker process
(``dtpyfw worker run``).
"""

from __future__ import annotations

__all__ = ["WorkerContainer"]

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from dependency_injector import containers, providers

from dtpyfw.worker._inline import InlineBroker
from dtpyfw.worker._kafka import KafkaBroker
from dtpyfw.worker._memory import MemoryBroker
from dtpyfw.worker._queue import TaskQueue
from dtpyfw.worker._redis import RedisBroker
from dtpyfw.worker._settings import WorkerSettings
from dtpyfw.worker._task import TaskRegistry, bind_queue, default_registry, unbind_queue
from dtpyfw.worker._worker import Worker


def _queue(broker: Any, settings: WorkerSettings, registry: TaskRegistry) -> Iterator[TaskQueue]:
    """Bind a TaskQueue (and start the embedded worker); undo both at shutdown."""
    queue = TaskQueue(broker, settings, registry)
    if settings.strategy in ("threads", "asyncio"):
        queue.embedded = Worker(queue)
        if settings.strategy == "threads":
            queue.embedded.start()
        else:
            with contextlib.suppress(RuntimeError):  # no loop yet: the first aenqueue starts it
                asyncio.get_running_loop()
                queue.embedded.attach()
    bind_queue(queue)
    try:
        yield queue
    finally:
        unbind_queue(queue)
        queue.close()


async def _aclose(queue: TaskQueue) -> AsyncIterator[None]:
    """At async shutdown: let an asyncio worker finish, close the async Redis client."""
    try:
        yield
    finally:
        await queue.aclose()


def _ping(queue: TaskQueue) -> None:
    """Raise when the broker cannot be reached."""
    queue.ping()


async def _aping(queue: TaskQueue) -> None:
    """Async twin of :func:`_ping`."""
    await queue.aping()


class WorkerContainer(containers.DeclarativeContainer):
    """Background tasks; provide ``settings`` (a WorkerSettings) when building it.

    ``redis_settings`` (a RedisSettings or None) is needed by the ``redis``
    and ``kafka`` strategies, ``kafka_settings`` by ``kafka`` only;
    ``registry`` defaults to the registry ``@task`` fills.
    """

    settings = providers.Dependency(instance_of=WorkerSettings)
    redis_settings: providers.Dependency[Any] = providers.Dependency(default=providers.Object(None))
    kafka_settings: providers.Dependency[Any] = providers.Dependency(default=providers.Object(None))
    registry = providers.Object(default_registry)
    broker = providers.Selector(
        settings.provided.strategy,
        inline=providers.Singleton(InlineBroker, settings, registry),
        threads=providers.Singleton(MemoryBroker, settings),
        asyncio=providers.Singleton(MemoryBroker, settings),
        redis=providers.Singleton(RedisBroker, settings, redis_settings),
        kafka=providers.Singleton(KafkaBroker, settings, redis_settings, kafka_settings),
    )
    queue = providers.Resource(_queue, broker, settings, registry)
    #: Opened by ``ainit_resources`` only; closes the asynchronous side gracefully.
    aclose_queue = providers.Resource(_aclose, queue)
    worker = providers.Factory(Worker, queue)
    health_check = providers.Callable(_ping, queue)
    ahealth_check = providers.Callable(_aping, queue)
