"""Fixtures the worker integration tests share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dtpyfw.worker import TaskQueue, Worker


@pytest.fixture
def start() -> Iterator[Callable[..., Worker]]:
    """Start a Worker on a queue (options as for Worker); every one is stopped afterwards."""
    workers: list[Worker] = []

    def start_worker(queue: TaskQueue, **options: Any) -> Worker:
        worker = Worker(queue, **options)
        worker.start()
        workers.append(worker)
        return worker

    yield start_worker
    for worker in workers:
        worker.stop(timeout=2)
