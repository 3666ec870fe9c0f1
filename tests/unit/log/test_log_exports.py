"""The public surface of dtpyfw.log."""

from __future__ import annotations

import dtpyfw.log


def test_all_is_sorted_and_complete() -> None:
    """``__all__`` is sorted and names every public attribute of the package."""
    public = {
        name
        for name in dir(dtpyfw.log)
        if not name.startswith("_") and not isinstance(getattr(dtpyfw.log, name), type(dtpyfw))
    }
    assert dtpyfw.log.__all__ == sorted(dtpyfw.log.__all__)
    assert set(dtpyfw.log.__all__) == public
    for name in dtpyfw.log.__all__:  # lazy names resolve to real objects
        assert getattr(dtpyfw.log, name) is not None
