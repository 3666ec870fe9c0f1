"""The public surface of dtpyfw.messaging."""

from __future__ import annotations

import dtpyfw.messaging


def test_all_is_sorted_and_complete() -> None:
    """__all__ lists every public name of the package, sorted."""
    # isidentifier(): pytest's assertion rewriting may add "@py_builtins" to the namespace.
    public = {
        name for name in vars(dtpyfw.messaging) if name.isidentifier() and not name.startswith("_")
    }
    assert dtpyfw.messaging.__all__ == sorted(dtpyfw.messaging.__all__)
    assert set(dtpyfw.messaging.__all__) == public
