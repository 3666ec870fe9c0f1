"""The public surface of dtpyfw.http."""

from __future__ import annotations

import dtpyfw.http


def test_all_is_sorted_and_complete() -> None:
    """__all__ lists every public name of the package, sorted."""
    # isidentifier(): pytest's assertion rewriting may add "@py_builtins" to the namespace.
    public = {name for name in dir(dtpyfw.http) if name.isidentifier() and not name.startswith("_")}
    assert dtpyfw.http.__all__ == sorted(dtpyfw.http.__all__)
    assert set(dtpyfw.http.__all__) == public
    for name in dtpyfw.http.__all__:  # lazy names resolve to real objects
        assert getattr(dtpyfw.http, name) is not None
