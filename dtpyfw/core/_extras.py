"""Lazy imports of optional extras with an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from dtpyfw.core.errors import DependencyMissing


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`DependencyMissing` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyMissing(
            f"{module!r} is not installed: it comes with the {extra!r} extra; "
            f"install it with: pip install 'dtpyfw[{extra}]'"
        ) from exc
