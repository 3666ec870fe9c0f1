"""S3Storage against moto and s3proxy: multipart, metadata, retries, timeouts, settings swap.

The tests that talk to a server run on both (``any_s3_raw_settings``); s3proxy
checks signatures, moto does not (see test_storage_s3proxy.py for that).
"""

from __future__ import annotations

import hashlib
import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from dtpyfw.config import load_settings
from dtpyfw.container import ServiceContainer
from dtpyfw.core.errors import StorageUnavailable
from dtpyfw.log import capture_logs
from dtpyfw.storage import (
    S3Storage,
    S3StorageSettings,
    S3StoreSettings,
    StorageContainer,
    StorageSettings,
)

MiB = 1024 * 1024


class Pattern(io.RawIOBase):
    """``size`` deterministic bytes, optionally failing once ``fail_at`` bytes were read."""

    def __init__(self, size: int, fail_at: int | None = None) -> None:
        self.size = size
        self.position = 0
        self.fail_at = fail_at
        self.md5 = hashlib.md5(usedforsecurity=False)

    def readable(self) -> bool:
        """Raw streams must say they can be read."""
        return True

    def readinto(self, buffer: Any) -> int:
        """The next bytes of a repeating 0..250 pattern."""
        if self.fail_at is not None and self.position >= self.fail_at:
            raise ConnectionAbortedError("the source broke")
        view = memoryview(buffer)
        count = min(len(view), self.size - self.position)
        start = self.position % 251
        block = (bytes(range(251)) * (count // 251 + 2))[start : start + count]
        view[:count] = block
        self.md5.update(block)
        self.position += count
        return count


@pytest.fixture
def store(any_s3_raw_settings: dict[str, Any]) -> S3Storage:
    """An S3Storage on a fresh bucket of moto or s3proxy, built from settings."""
    return S3Storage(S3StoreSettings.model_validate(any_s3_raw_settings))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def settings_at(url: str, **extra: Any) -> S3StoreSettings:
    """Settings for an S3 endpoint with fast retries."""
    return S3StoreSettings.model_validate(
        {
            "bucket": "nowhere",
            "endpoint_url": url,
            "region": "us-east-1",
            "access_key_id": "k",
            "secret_access_key": "s",
            "retry": {"attempts": 3, "initial_delay": 0.01, "jitter": 0},
            **extra,
        }
    )


def test_large_upload_goes_multipart_and_downloads_intact(store: S3Storage, tmp_path: Path) -> None:
    """20 MB streams in 8 MB parts (etag '-3'); download_to and stream return the same bytes."""
    source = Pattern(20 * MiB)
    info = store.put("big.bin", source)  # type: ignore[arg-type]
    assert info.size == 20 * MiB
    assert info.etag.endswith("-3")
    target = tmp_path / "big.bin"
    store.download_to("big.bin", target)  # above the threshold: ranged GETs
    with target.open("rb") as file:
        assert hashlib.file_digest(file, "md5").hexdigest() == source.md5.hexdigest()
    md5 = hashlib.md5(usedforsecurity=False)
    for chunk in store.stream("big.bin", chunk_size=MiB):
        md5.update(chunk)
    assert md5.hexdigest() == source.md5.hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]


def test_multipart_upload_failing_midway_keeps_the_old_object(store: S3Storage) -> None:
    """A source breaking after two parts raises its own error; no upload is left open."""
    store.put("doc.bin", b"old")
    with pytest.raises(ConnectionAbortedError, match="source broke"):
        store.put("doc.bin", Pattern(30 * MiB, fail_at=18 * MiB))  # type: ignore[arg-type]
    assert store.get("doc.bin") == b"old"
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket)
    assert uploads.get("Uploads", []) == []


def test_non_ascii_metadata_is_stored_rfc2047_encoded(store: S3Storage) -> None:
    """S3 receives RFC 2047 words for non-ASCII values; dtpyfw reads them back decoded."""
    store.put("m.txt", b"x", metadata={"city": "Zürich", "plain": "ok"})
    raw = store.client.head_object(Bucket=store.bucket, Key="m.txt")["Metadata"]
    assert raw["city"].startswith("=?UTF-8?B?")
    assert raw["plain"] == "ok"
    assert store.stat("m.txt").metadata == {"city": "Zürich", "plain": "ok"}


def test_copy_and_move_keep_metadata_server_side(store: S3Storage) -> None:
    """copy duplicates with metadata; move leaves only the destination."""
    store.put("a.json", b"{}", cache_control="no-store", metadata={"v": "1"})
    copied = store.copy("a.json", "b.json")
    moved = store.move("a.json", "c/d.json")
    assert (copied.metadata, copied.cache_control) == ({"v": "1"}, "no-store")
    assert moved.content_type == "application/json"
    assert [info.key for info in store.list()] == ["b.json", "c/d.json"]


def test_create_bucket_creates_a_missing_bucket(any_s3_raw_settings: dict[str, Any]) -> None:
    """create_bucket: true makes the bucket on first use; ping fails before, passes after."""
    s3_raw_settings = any_s3_raw_settings
    name = s3_raw_settings["bucket"] + "-new"
    missing = S3Storage(S3StoreSettings.model_validate({**s3_raw_settings, "bucket": name}))
    with pytest.raises(StorageUnavailable, match="does not exist"):
        missing.ping()
    created = S3Storage(
        S3StoreSettings.model_validate({**s3_raw_settings, "bucket": name, "create_bucket": True})
    )
    created.ping()
    created.put("k", b"v")
    S3Storage(
        S3StoreSettings.model_validate({**s3_raw_settings, "bucket": name, "create_bucket": True})
    )
    client = created.client
    client.delete_object(Bucket=name, Key="k")
    client.delete_bucket(Bucket=name)


def test_unreachable_server_is_retried_then_unavailable(closed_port: int) -> None:
    """A refused connection is retried `attempts` times, then StorageUnavailable (chained)."""
    store = S3Storage(settings_at(f"http://127.0.0.1:{closed_port}"))
    with (
        capture_logs(logger="dtpyfw.storage") as records,
        pytest.raises(StorageUnavailable) as info,
    ):
        store.get("k")
    assert [r["attempt"] for r in records] == [1, 2]
    assert info.value.__cause__ is not None
    with pytest.raises(StorageUnavailable):
        store.ping()


def test_one_shot_stream_is_not_retried_but_a_file_is(closed_port: int, tmp_path: Path) -> None:
    """A large non-seekable put is sent once; the same content from a file is retried."""
    store = S3Storage(settings_at(f"http://127.0.0.1:{closed_port}"))
    with capture_logs(logger="dtpyfw.storage") as records, pytest.raises(StorageUnavailable):
        store.put("big", Pattern(9 * MiB))  # type: ignore[arg-type]
    assert records == []
    path = tmp_path / "big.bin"
    path.write_bytes(b"\0" * (9 * MiB))
    with capture_logs(logger="dtpyfw.storage") as records, pytest.raises(StorageUnavailable):
        store.upload_from(path, "big")
    assert [r["attempt"] for r in records] == [1, 2]


def test_read_timeout_is_applied(silent_port: int) -> None:
    """A server that never answers fails each attempt after read_timeout, not later."""
    store = S3Storage(
        settings_at(
            f"http://127.0.0.1:{silent_port}",
            read_timeout=0.3,
            retry={"attempts": 2, "initial_delay": 0, "jitter": 0},
        )
    )
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="ReadTimeout"):
        store.stat("k")
    assert time.monotonic() - started < 2 * 0.3 + 2.0


def test_environment_swaps_local_for_s3_with_no_code_change(
    tmp_path: Path, s3_raw_settings: dict[str, Any]
) -> None:
    """YAML says local; DTPYFW_STORAGE__* says s3: the service container talks to moto."""
    config = tmp_path / "config.yaml"
    config.write_text(f"storage:\n  backend: local\n  root: {tmp_path / 'objects'}\n")
    env = {
        f"DTPYFW_STORAGE__{k.upper()}": str(v) for k, v in s3_raw_settings.items() if k != "retry"
    }
    settings = load_settings(config, env=env, env_file=None)
    assert isinstance(settings.storage, S3StorageSettings)
    container = ServiceContainer.from_settings(settings)
    store = container.storage.store()
    assert isinstance(store, S3Storage)
    store.put("from-env.txt", b"swapped")
    assert store.get("from-env.txt") == b"swapped"
    assert container.health().as_dict()["checks"]["storage"]["ok"] is True  # type: ignore[index]
    assert not (tmp_path / "objects").exists()


def test_named_stores_on_s3_and_gcs(
    s3_raw_settings: dict[str, Any], gcs_raw_settings: dict[str, Any]
) -> None:
    """Named stores on S3 and GCS beside a memory default; the health check pings them all."""
    settings = TypeAdapter(StorageSettings).validate_python(
        {"backend": "memory", "stores": {"avatars": s3_raw_settings, "exports": gcs_raw_settings}}
    )
    container = StorageContainer(settings=settings)
    stores = container.stores()
    stores["avatars"].put("alice.png", b"\x89PNG")
    stores["exports"].put("2024.csv", b"a,b")
    assert [i.key for i in stores["avatars"].list()] == ["alice.png"]
    assert [i.key for i in stores["exports"].list()] == ["2024.csv"]
    assert list(container.store().list()) == []
    container.health_check()
    broken = TypeAdapter(StorageSettings).validate_python(
        {
            "backend": "memory",
            "stores": {"avatars": {**s3_raw_settings, "bucket": "no-such-bucket"}},
        }
    )
    with pytest.raises(StorageUnavailable, match="store 'avatars'"):
        StorageContainer(settings=broken).health_check()


def test_small_put_returns_what_stat_reports(store: S3Storage) -> None:
    """One PutObject's answer gives the same info stat reads back (names lower-cased by S3)."""
    put = store.put("p.txt", b"abc", cache_control="max-age=5", metadata={"Owner": "Ann"})
    assert put == store.stat("p.txt")
    assert put.metadata == {"owner": "Ann"}
