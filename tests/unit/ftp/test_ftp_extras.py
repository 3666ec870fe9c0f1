"""dtpyfw.ftp imports without ftputil; creating a client names the extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_ftp_without_ftputil() -> None:
    """Settings and container load; FtpClient raises DependencyMissing naming dtpyfw[ftp]."""
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "ftputil":
                    raise ImportError(f"blocked for the test: {name}")
                return None

        sys.meta_path.insert(0, Block())

        from dtpyfw.core.errors import DependencyMissing
        from dtpyfw.ftp import FtpClient, FtpContainer, FtpSettings

        settings = FtpSettings(host="127.0.0.1")
        FtpContainer(settings=settings)
        try:
            FtpClient(settings)
        except DependencyMissing as exc:
            assert "pip install 'dtpyfw[ftp]'" in str(exc), str(exc)
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
