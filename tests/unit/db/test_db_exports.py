"""The public surface of dtpyfw.db, and importing it without SQLAlchemy."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import dtpyfw.db


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, names every public attribute, and each name resolves."""
    # isidentifier(): pytest's assertion rewriting may add "@py_builtins" to the namespace.
    public = {name for name in vars(dtpyfw.db) if name.isidentifier() and not name.startswith("_")}
    assert dtpyfw.db.__all__ == sorted(dtpyfw.db.__all__)
    assert public <= set(dtpyfw.db.__all__)
    for name in dtpyfw.db.__all__:
        assert getattr(dtpyfw.db, name) is not None
    assert set(dtpyfw.db.__all__) <= set(dir(dtpyfw.db))


def test_package_imports_without_sqlalchemy() -> None:
    """Without SQLAlchemy the package imports; models and engines raise DependencyMissing."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["sqlalchemy"] = None  # makes "import sqlalchemy" raise ImportError
        import dtpyfw.db
        from dtpyfw.core.errors import DependencyMissing

        for use in (
            lambda: dtpyfw.db.ModelBase,
            lambda: dtpyfw.db.create_sync_engine(dtpyfw.db.DatabaseSettings()),
        ):
            try:
                use()
            except DependencyMissing as exc:
                assert "pip install 'dtpyfw[db]'" in str(exc), exc
            else:
                raise AssertionError("no DependencyMissing")
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
