"""GcsStorage on gcp-storage-emulator and fake-gcs-server: resumable uploads, signing, buckets."""

from __future__ import annotations

import hashlib
import io
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dtpyfw.core.errors import NotSupported, ObjectNotFound, StorageUnavailable
from dtpyfw.log import capture_logs
from dtpyfw.storage import GcsStorage, GcsStoreSettings
from dtpyfw.testing._backends import _drop_gcs_bucket

KiB = 1024
MiB = 1024 * KiB


class Chunks(io.RawIOBase):
    """A non-seekable stream of ``size`` random-looking bytes; remembers its largest read."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.largest = 0
        self.md5 = hashlib.md5(usedforsecurity=False)

    def readable(self) -> bool:
        """Raw streams must say they can be read."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from a hash chain, so no two chunks repeat."""
        view = memoryview(buffer)
        self.largest = max(self.largest, len(view))
        count = min(len(view), self.left)
        block = (hashlib.sha256(str(self.left).encode()).digest() * (count // 32 + 1))[:count]
        view[:count] = block
        self.md5.update(block)
        self.left -= count
        return count


@pytest.fixture
def settings(any_gcs_raw_settings: dict[str, Any]) -> dict[str, Any]:
    """Settings for either emulator with a small resumable chunk: uploads span requests."""
    return {**any_gcs_raw_settings, "chunk_size": 256 * KiB}


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_resumable_upload_streams_in_chunks(settings: dict[str, Any], tmp_path: Path) -> None:
    """3 MB above a 256 KiB chunk goes resumable; memory use follows the chunk, not the size."""
    store = GcsStorage(GcsStoreSettings.model_validate(settings))
    source = Chunks(3 * MiB + 5)
    info = store.put("up/big.bin", source)  # type: ignore[arg-type]
    assert source.largest <= MiB
    assert (info.size, info.etag) == (3 * MiB + 5, source.md5.hexdigest())
    target = tmp_path / "big.bin"
    store.download_to("up/big.bin", target)
    with target.open("rb") as file:
        assert hashlib.file_digest(file, "md5").hexdigest() == source.md5.hexdigest()
    chunks = list(store.stream("up/big.bin", chunk_size=100 * KiB))
    assert max(len(c) for c in chunks) == 100 * KiB
    assert sum(len(c) for c in chunks) == info.size


def test_signing_needs_a_service_account_key(settings: dict[str, Any]) -> None:
    """Anonymous credentials cannot sign: presigned_url is NotSupported, saying what to set."""
    store = GcsStorage(GcsStoreSettings.model_validate({**settings, "credentials_info": None}))
    store.put("k", b"x")
    with pytest.raises(NotSupported, match="credentials_info"):
        store.presigned_url("k")


def test_missing_bucket_and_create_bucket(settings: dict[str, Any]) -> None:
    """ping names a missing bucket; create_bucket: true creates it on first use."""
    name = settings["bucket"] + "-new"
    with pytest.raises(StorageUnavailable, match="does not exist"):
        GcsStorage(GcsStoreSettings.model_validate({**settings, "bucket": name})).ping()
    store = GcsStorage(
        GcsStoreSettings.model_validate({**settings, "bucket": name, "create_bucket": True})
    )
    try:
        store.put("k", b"v")
        assert store.get("k") == b"v"
        GcsStorage(  # creating it again is fine
            GcsStoreSettings.model_validate({**settings, "bucket": name, "create_bucket": True})
        )
    finally:
        _drop_gcs_bucket(settings["endpoint"], name)


def test_delete_of_a_missing_object(settings: dict[str, Any]) -> None:
    """delete and stat of a missing key raise ObjectNotFound naming it."""
    store = GcsStorage(GcsStoreSettings.model_validate(settings))
    with pytest.raises(ObjectNotFound, match="'nope'"):
        store.delete("nope")


def test_unreachable_emulator_is_retried_then_unavailable(closed_port: int) -> None:
    """A refused connection is retried under the policy, then StorageUnavailable (chained)."""
    store = GcsStorage(
        GcsStoreSettings(
            bucket="nowhere",
            endpoint=f"http://127.0.0.1:{closed_port}",
            anonymous=True,
            retry={"attempts": 3, "initial_delay": 0.01, "jitter": 0},
        )
    )
    with (
        capture_logs(logger="dtpyfw.storage") as records,
        pytest.raises(StorageUnavailable) as info,
    ):
        store.get("k")
    assert [r["attempt"] for r in records] == [1, 2]
    assert info.value.__cause__ is not None
    with pytest.raises(StorageUnavailable):
        store.ping()
