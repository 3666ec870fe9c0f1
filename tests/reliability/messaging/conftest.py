"""Fixtures of the messaging reliability tests (helpers: messaging_reliability_helpers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from messaging_reliability_helpers import ConsumerProcess

from dtpyfw.testing import find_redis
from dtpyfw.testing._backends import _find_or_skip


@pytest.fixture
def private_redis_url() -> Iterator[str]:
    """A redis-server of this test alone: no other test run can flush what it records."""
    handle = _find_or_skip(lambda: find_redis(launch="always"))
    try:
        yield handle.url
    finally:
        handle.stop()


@pytest.fixture
def consumers(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], ConsumerProcess]]:
    """Start consumer processes (logs in tmp_path); any still running at the end is killed."""
    started: list[ConsumerProcess] = []
    directory = tmp_path

    def start(config: dict[str, Any]) -> ConsumerProcess:
        consumer = ConsumerProcess(config, directory / f"consumer-{len(started)}.log")
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        if consumer.process.poll() is None:
            consumer.kill()
