"""Tasks for the reliability tests, imported by each worker process (--tasks)."""

from __future__ import annotations

import os
import time
from typing import Any

from dtpyfw.container import Provide, ServiceContainer, inject
from dtpyfw.worker import current_task, task


@task(name="rel.count")
@inject
def count(number: int, pause: float, client: Any = Provide[ServiceContainer.redis.client]) -> None:
    """Count this run of ``number`` and who ran it, in Redis."""
    pipe = client.pipeline(transaction=False)
    pipe.hincrby("t:runs", str(number), 1)
    pipe.rpush(f"t:ran:{os.getpid()}", number)
    pipe.execute()
    if pause:
        time.sleep(pause)


@task(name="rel.tick")
@inject
def tick(client: Any = Provide[ServiceContainer.redis.client]) -> None:
    """Count the runs of each schedule tick, in Redis."""
    context = current_task()
    assert context is not None
    assert context.tick is not None
    client.hincrby("t:ticks", context.tick.isoformat(), 1)


@task(name="rel.poison")
@inject
def poison(client: Any = Provide[ServiceContainer.redis.client]) -> None:
    """A task that takes its worker process down, as an OOM kill or a segfault would."""
    client.incr("t:poison:runs")
    os.kill(os.getpid(), 9)
