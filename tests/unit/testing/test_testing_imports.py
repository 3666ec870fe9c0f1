"""dtpyfw.testing's launchers serve scripts and benchmarks too: no pytest needed to import them."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_dtpyfw_testing_imports_without_pytest() -> None:
    """Only the plugin and the fixture module (_backends) may import pytest."""
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("pytest", "_pytest"):
                    raise ImportError(name)
                return None

        sys.meta_path.insert(0, Block())
        import dtpyfw.testing
        assert "dtpyfw.testing._backends" not in sys.modules
        print(len(dtpyfw.testing.__all__))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 10
