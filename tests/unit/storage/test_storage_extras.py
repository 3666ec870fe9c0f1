"""Without boto3 or google-cloud-storage, S3 and GCS stores say which extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_network_backends_name_their_extra_when_missing() -> None:
    """Building an s3 / gcs store without its library raises DependencyMissing with pip's hint."""
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"boto3", "botocore", "s3transfer", "google"}:
                    raise ImportError(f"blocked for the test: {name}")
                return None

        sys.meta_path.insert(0, Block())

        from dtpyfw.core.errors import DependencyMissing
        from dtpyfw.storage import GcsStorageSettings, S3StorageSettings, StorageContainer

        for settings, extra in [
            (S3StorageSettings(bucket="abc"), "storage-s3"),
            (GcsStorageSettings(bucket="abc", anonymous=True), "storage-gcs"),
        ]:
            try:
                StorageContainer(settings=settings).store()
            except DependencyMissing as exc:
                assert f"pip install 'dtpyfw[{extra}]'" in str(exc), str(exc)
            else:
                raise AssertionError(f"{extra}: no DependencyMissing")
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
