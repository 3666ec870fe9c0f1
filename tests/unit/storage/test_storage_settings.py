"""The storage section: one union over local, memory, s3 and gcs, swappable from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from dtpyfw.config import load_settings
from dtpyfw.core.errors import ConfigError
from dtpyfw.storage import (
    GcsStorage,
    GcsStorageSettings,
    GcsStoreSettings,
    LocalStorageSettings,
    MemoryStorage,
    S3Storage,
    S3StorageSettings,
    S3StoreSettings,
    StorageContainer,
    StorageSettings,
)
from dtpyfw.storage._async import AsyncStorageAdapter

ADAPTER: TypeAdapter[object] = TypeAdapter(StorageSettings)
UNREACHABLE = "http://127.0.0.1:9"


def test_backend_picks_the_settings_class() -> None:
    """backend: s3 / gcs validate to their own models with their defaults."""
    s3 = ADAPTER.validate_python({"backend": "s3", "bucket": "media"})
    gcs = ADAPTER.validate_python({"backend": "gcs", "bucket": "media"})
    assert isinstance(s3, S3StorageSettings)
    assert (s3.multipart_threshold, s3.multipart_chunk_size, s3.max_concurrency) == (
        8 * 1024 * 1024,
        8 * 1024 * 1024,
        4,
    )
    assert isinstance(gcs, GcsStorageSettings)
    assert gcs.chunk_size == 8 * 1024 * 1024


def test_keys_of_other_backends_are_ignored_but_unknown_keys_are_not() -> None:
    """Switching backend keeps the other backends' keys harmless; a typo is still an error."""
    settings = ADAPTER.validate_python(
        {"backend": "gcs", "bucket": "b-1", "root": "/srv", "endpoint_url": "http://x"}
    )
    assert isinstance(settings, GcsStorageSettings)
    with pytest.raises(ValidationError, match="buckett"):
        ADAPTER.validate_python({"backend": "s3", "bucket": "b-1", "buckett": "typo"})


def test_unknown_backend_lists_every_backend() -> None:
    """The error for a wrong backend names the four that exist."""
    with pytest.raises(ValidationError, match="backend must be one of: local, memory, s3, gcs"):
        ADAPTER.validate_python({"backend": "azure"})


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"backend": "s3"}, "bucket"),
        ({"backend": "s3", "bucket": "ab"}, "at least 3"),
        ({"backend": "s3", "bucket": "abc", "multipart_chunk_size": 1024}, "greater than or equal"),
        ({"backend": "gcs", "bucket": "abc", "chunk_size": 300 * 1024}, "multiple of 262144"),
        ({"backend": "s3", "bucket": "abc", "addressing_style": "dns"}, "addressing_style"),
    ],
)
def test_bad_values_are_refused(data: dict[str, object], problem: str) -> None:
    """Missing buckets, parts below S3's 5 MiB and GCS chunks off 256 KiB are refused."""
    with pytest.raises(ValidationError, match=problem):
        ADAPTER.validate_python(data)


def test_secrets_never_show() -> None:
    """Secret keys, session tokens and service-account keys are masked in reprs."""
    s3 = S3StoreSettings(bucket="abc", secret_access_key="s3cr3t", session_token="t0k3n")
    gcs = GcsStoreSettings(bucket="abc", credentials_info='{"private_key": "k3y"}')
    shown = repr(s3) + str(s3) + repr(gcs) + str(gcs)
    assert "s3cr3t" not in shown
    assert "t0k3n" not in shown
    assert "k3y" not in shown


def test_environment_swaps_the_backend(tmp_path: Path) -> None:
    """DTPYFW_STORAGE__BACKEND=s3 over a local YAML section gives S3 settings, root ignored."""
    config = tmp_path / "config.yaml"
    config.write_text("storage:\n  backend: local\n  root: /srv/objects\n")
    settings = load_settings(
        config,
        env={
            "DTPYFW_STORAGE__BACKEND": "s3",
            "DTPYFW_STORAGE__BUCKET": "media",
            "DTPYFW_STORAGE__ENDPOINT_URL": "http://minio:9000",
        },
        env_file=None,
    )
    assert isinstance(settings.storage, S3StorageSettings)
    assert (settings.storage.bucket, settings.storage.endpoint_url) == (
        "media",
        "http://minio:9000",
    )


def test_environment_swap_without_a_bucket_names_the_key(tmp_path: Path) -> None:
    """Swapping to gcs without a bucket is a ConfigError naming storage.bucket."""
    with pytest.raises(ConfigError, match=r"storage\.bucket"):
        load_settings(None, env={"DTPYFW_STORAGE__BACKEND": "gcs"}, env_file=None)


def test_container_builds_network_stores_without_connecting() -> None:
    """store resolves S3Storage / GcsStorage from settings; nothing is contacted."""
    s3 = StorageContainer(
        settings=S3StorageSettings(bucket="abc", endpoint_url=UNREACHABLE, region="us-east-1")
    )
    gcs = StorageContainer(
        settings=GcsStorageSettings(bucket="abc", endpoint=UNREACHABLE, anonymous=True)
    )
    assert isinstance(s3.store(), S3Storage)
    assert isinstance(gcs.store(), GcsStorage)
    assert (s3.backend(), gcs.backend()) == ("s3", "gcs")
    assert isinstance(s3.async_store(), AsyncStorageAdapter)
    assert s3.async_store().storage is s3.store()


def test_named_stores_mix_backends() -> None:
    """storage.stores may put each named store on its own backend."""
    settings = LocalStorageSettings.model_validate(
        {
            "root": "/nonexistent/dtpyfw-never-created",
            "stores": {
                "avatars": {"backend": "s3", "bucket": "avatars", "endpoint_url": UNREACHABLE},
                "exports": {
                    "backend": "gcs",
                    "bucket": "exports",
                    "endpoint": UNREACHABLE,
                    "anonymous": True,
                },
                "scratch": {"backend": "memory"},
            },
        }
    )
    stores = StorageContainer(settings=settings).stores()
    assert isinstance(stores["avatars"], S3Storage)
    assert isinstance(stores["exports"], GcsStorage)
    assert isinstance(stores["scratch"], MemoryStorage)
    assert not Path("/nonexistent/dtpyfw-never-created").exists()
