"""The core imports and runs with no optional extra installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Every third-party library that an extra brings; the core must not need any of them.
EXTRAS_LIBRARIES = [
    "sqlalchemy",
    "aiosqlite",
    "psycopg",
    "redis",
    "fastapi",
    "starlette",
    "uvicorn",
    "boto3",
    "google",
    "ftputil",
    "kafka",
    "bcrypt",
    "jwt",
    "opentelemetry",
    "alembic",
]


def test_core_without_extras() -> None:
    """Settings, container, log and testing work; a missing extra names its install command."""
    script = textwrap.dedent(
        f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {EXTRAS_LIBRARIES!r}:
                    raise ImportError(f"blocked for the test: {{name}}")
                return None

        sys.meta_path.insert(0, Block())

        import dtpyfw, dtpyfw.config, dtpyfw.core, dtpyfw.log, dtpyfw.storage, dtpyfw.messaging
        import dtpyfw.db, dtpyfw.redis, dtpyfw.http, dtpyfw.api, dtpyfw.testing
        from dtpyfw.config import Settings
        from dtpyfw.container import ServiceContainer
        from dtpyfw.core.errors import DependencyMissing

        settings = Settings.model_validate({{"storage": {{"backend": "memory"}}, "db": {{}}}})
        container = ServiceContainer.from_settings(settings)
        container.validate()
        assert container.storage.store().exists("x") is False
        for build, extra in [(lambda: container.db.engine(), "db"),
                             (lambda: dtpyfw.api.create_app(container), "api")]:
            try:
                build()
            except DependencyMissing as exc:
                assert f"pip install 'dtpyfw[{{extra}}]'" in str(exc), str(exc)
            else:
                raise AssertionError(f"{{extra}}: no DependencyMissing")
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
