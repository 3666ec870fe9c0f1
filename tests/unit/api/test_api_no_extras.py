"""dtpyfw.api imports without FastAPI; the names that need it say how to install it."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_api_names_without_fastapi() -> None:
    """Settings and page models work without FastAPI; CurrentUser raises DependencyMissing."""
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"fastapi", "starlette", "jwt", "bcrypt", "redis"}:
                    raise ImportError(f"blocked: {name}")
                return None

        sys.meta_path.insert(0, Block())
        import dtpyfw.api
        from dtpyfw.core.errors import DependencyMissing

        dtpyfw.api.ApiSettings(cors={"allow_origins": ["https://a.example"]})
        page = dtpyfw.api.Page[int](items=[1], limit=20, offset=0)
        assert page.total is None
        try:
            dtpyfw.api.CurrentUser
        except DependencyMissing as exc:
            assert "pip install 'dtpyfw[api]'" in str(exc), exc
        else:
            raise AssertionError("no DependencyMissing")
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
