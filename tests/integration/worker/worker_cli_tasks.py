"""Tasks for the `dtpyfw worker run` tests, imported by the worker subprocess (--tasks)."""

from __future__ import annotations

import time
from typing import Any

from dtpyfw.container import Provide, ServiceContainer, inject
from dtpyfw.worker import task


@task(name="cli.sleep")
@inject
def sleep_then_mark(
    key: str, seconds: float, client: Any = Provide[ServiceContainer.redis.client]
) -> str:
    """Sleep, then SET key (through the container's Redis client, injected)."""
    time.sleep(seconds)
    client.set(key, "done")
    return key


@task(name="cli.fail")
def fail() -> None:
    """Always fails: fills the dead-letter queue."""
    raise RuntimeError("broken on purpose")
