"""The public surface of dtpyfw.storage."""

from __future__ import annotations

import dtpyfw.storage


def test_all_is_sorted_and_complete() -> None:
    """__all__ lists every public name of the package, sorted."""
    # isidentifier(): pytest's assertion rewriting may add "@py_builtins" to the namespace.
    public = {
        name for name in vars(dtpyfw.storage) if name.isidentifier() and not name.startswith("_")
    }
    assert dtpyfw.storage.__all__ == sorted(dtpyfw.storage.__all__)
    assert set(dtpyfw.storage.__all__) == public
