"""Waiting on a condition in tests: poll it, never sleep a fixed time and hope."""

from __future__ import annotations

__all__ = ["wait_until"]

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], object],
    timeout: float = 10.0,
    *,
    interval: float = 0.01,
    what: str = "condition",
) -> None:
    """Return as soon as ``condition()`` is true; AssertionError after ``timeout`` seconds.

    The condition is checked once more at the deadline, so a slow machine that
    overshoots the last pause does not fail a condition that came true.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{what} not met within {timeout:g} s")
        time.sleep(min(interval, left))  # the last pause ends at the deadline: one more look
