"""dtpyfw.testing.wait_until: returns once the condition holds, fails loudly at the deadline."""

from __future__ import annotations

import itertools

import pytest

from dtpyfw.testing import wait_until


def test_returns_as_soon_as_the_condition_holds() -> None:
    calls = itertools.count(1)
    wait_until(lambda: next(calls) >= 3, timeout=5, interval=0)
    assert next(calls) == 4  # checked exactly three times


def test_fails_at_the_deadline_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"the queue to drain not met within 0\.05 s"):
        wait_until(lambda: False, timeout=0.05, what="the queue to drain")


def test_looks_once_more_at_the_deadline() -> None:
    """A condition that comes true during the last pause still passes."""
    calls = itertools.count(1)
    wait_until(lambda: next(calls) >= 2, timeout=0.01, interval=1.0)
