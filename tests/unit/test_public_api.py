"""Every package's public surface: a sorted __all__ whose names all resolve."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "dtpyfw.api",
    "dtpyfw.cli",
    "dtpyfw.config",
    "dtpyfw.container",
    "dtpyfw.core",
    "dtpyfw.db",
    "dtpyfw.ftp",
    "dtpyfw.http",
    "dtpyfw.log",
    "dtpyfw.messaging",
    "dtpyfw.redis",
    "dtpyfw.security",
    "dtpyfw.storage",
    "dtpyfw.testing",
    "dtpyfw.worker",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    """__all__ is sorted, has no duplicates, and each name is importable from the package."""
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == []
