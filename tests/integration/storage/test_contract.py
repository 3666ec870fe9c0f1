"""The storage contract: every backend, built by StorageContainer from settings, behaves alike.

Add a backend by adding its settings to ``BACKENDS``; every test then runs against it.
S3 runs against moto and against s3proxy (which, unlike moto, checks signatures),
GCS against gcp-storage-emulator and against fake-gcs-server: real servers in
their own processes, started by the dtpyfw test harness (``s3_bucket``,
``s3proxy_bucket``, ``gcs_bucket``, ``fake_gcs_bucket``).
"""

from __future__ import annotations

import hashlib
import io
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from dtpyfw.core.errors import InvalidKey, NotSupported, ObjectNotFound
from dtpyfw.storage import (
    AsyncStorage,
    ObjectInfo,
    Storage,
    StorageContainer,
    StorageSettings,
)

BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], dict[str, Any]]] = {
    "local": lambda request, tmp_path: {"backend": "local", "root": str(tmp_path / "store")},
    "memory": lambda request, tmp_path: {"backend": "memory"},
    # The fixtures are asked for here, so only these params start their servers.
    "s3-moto": lambda request, tmp_path: request.getfixturevalue("s3_raw_settings"),
    "s3-s3proxy": lambda request, tmp_path: request.getfixturevalue("s3proxy_raw_settings"),
    "gcs-emulator": lambda request, tmp_path: request.getfixturevalue("gcs_raw_settings"),
    "gcs-fake-gcs-server": lambda request, tmp_path: request.getfixturevalue(
        "fake_gcs_raw_settings"
    ),
}
#: Backends whose objects are served over HTTP, so presigned URLs exist.
PRESIGNING = {"s3", "gcs"}

INVALID_KEYS = ["../x", "/abs", "a/../b", "a\\b", "", "a\x00b", "a//b", "a/", "./a", "x" * 1025]

MiB = 1024 * 1024
_CYCLE = bytes(range(251))


@pytest.fixture(params=sorted(BACKENDS))
def container(request: pytest.FixtureRequest, tmp_path: Path) -> StorageContainer:
    """A StorageContainer for one backend, its settings validated as config loading does."""
    raw = BACKENDS[request.param](request, tmp_path)
    settings = TypeAdapter(StorageSettings).validate_python(raw)
    return StorageContainer(settings=settings)


@pytest.fixture
def store(container: StorageContainer) -> Storage:
    """The container's sync store."""
    return container.store()  # type: ignore[no-any-return]


@pytest.fixture
def astore(container: StorageContainer) -> AsyncStorage:
    """The container's async store."""
    return container.async_store()  # type: ignore[no-any-return]


class GeneratedStream(io.RawIOBase):
    """``size`` bytes made on demand; remembers the largest read asked of it."""

    def __init__(self, size: int, *, fail_after: int | None = None) -> None:
        self.remaining = size
        self.produced = 0
        self.largest_read = 0
        self.fail_after = fail_after
        self.md5 = hashlib.md5(usedforsecurity=False)

    def readable(self) -> bool:
        """Raw streams must say they can be read."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with the next bytes of a repeating pattern."""
        view = memoryview(buffer)
        self.largest_read = max(self.largest_read, len(view))
        if self.fail_after is not None and self.produced >= self.fail_after:
            raise OSError("the upstream connection broke")
        count = min(len(view), self.remaining)
        offset = self.produced % 251
        block = (_CYCLE * ((offset + count) // 251 + 1))[offset : offset + count]
        view[:count] = block
        self.md5.update(block)
        self.remaining -= count
        self.produced += count
        return count


def pattern(size: int) -> bytes:
    """The bytes GeneratedStream(size) produces when read in one go."""
    return bytes(i % 251 for i in range(size))


def keys(infos: Iterator[ObjectInfo]) -> list[str]:
    """The keys of a listing, in the order given."""
    return [info.key for info in infos]


def test_store_implements_the_protocol(store: Storage) -> None:
    """Every backend is a Storage."""
    assert isinstance(store, Storage)


def test_put_then_get_round_trips_bytes(store: Storage) -> None:
    """put returns the object's info and get gives the same bytes back."""
    before = datetime.now(UTC) - timedelta(seconds=5)
    info = store.put("docs/readme.txt", b"hello world")
    assert info.key == "docs/readme.txt"
    assert info.size == 11
    assert info.etag == hashlib.md5(b"hello world", usedforsecurity=False).hexdigest()
    assert info.content_type == "text/plain"
    assert info.updated.tzinfo is not None
    assert before <= info.updated <= datetime.now(UTC) + timedelta(seconds=5)
    assert store.get("docs/readme.txt") == b"hello world"


def test_put_replaces_an_existing_object(store: Storage) -> None:
    """A second put to the same key replaces content and metadata."""
    store.put("k", b"old", metadata={"v": "1"})
    store.put("k", b"new!", content_type="text/csv")
    assert store.get("k") == b"new!"
    info = store.stat("k")
    assert (info.size, info.content_type, info.metadata) == (4, "text/csv", {})


def test_empty_object(store: Storage) -> None:
    """A zero-byte object is stored, listed and read back."""
    info = store.put("empty", b"")
    assert info.size == 0
    assert store.get("empty") == b""
    assert list(store.stream("empty")) == []
    assert keys(store.list()) == ["empty"]


def test_default_content_type_is_octet_stream(store: Storage) -> None:
    """A key without a known extension gets application/octet-stream."""
    assert store.put("blob", b"x").content_type == "application/octet-stream"


def test_metadata_round_trip(store: Storage) -> None:
    """Content type, cache control and metadata come back from stat and list."""
    put = store.put(
        "img/a.bin",
        b"\x00\x01",
        content_type="image/png",
        cache_control="public, max-age=60",
        metadata={"owner": "alice", "note": "ünïcode"},
    )
    stat = store.stat("img/a.bin")
    (listed,) = store.list("img/")
    for info in (put, stat, listed):
        assert info.content_type == "image/png"
        assert info.cache_control == "public, max-age=60"
        assert info.metadata == {"owner": "alice", "note": "ünïcode"}
        assert info.etag == put.etag
        assert info.size == 2


def test_metadata_is_copied_not_shared(store: Storage) -> None:
    """Changing the dict passed to put, or the one stat returns, changes nothing stored."""
    metadata = {"a": "1"}
    store.put("k", b"x", metadata=metadata)
    metadata["a"] = "2"
    store.stat("k").metadata["a"] = "3"
    assert store.stat("k").metadata == {"a": "1"}


def test_metadata_values_must_be_strings(store: Storage) -> None:
    """Non-string metadata is a TypeError and nothing is written."""
    with pytest.raises(TypeError, match="metadata"):
        store.put("k", b"x", metadata={"n": 1})  # type: ignore[dict-item]
    assert not store.exists("k")


def test_put_streams_a_large_file_like_without_reading_it_whole(store: Storage) -> None:
    """A 20 MB file-like is read in bounded chunks and stored intact (multipart on S3)."""
    size = 20 * MiB
    source = GeneratedStream(size)
    info = store.put("big/blob.bin", source)  # type: ignore[arg-type]
    assert source.remaining == 0
    assert 0 < source.largest_read <= 4 * MiB
    assert info.size == size
    # S3 gives multipart uploads an etag that is not the content's MD5: compare with stat.
    assert info.etag == store.stat("big/blob.bin").etag
    md5 = hashlib.md5(usedforsecurity=False)
    total = 0
    for chunk in store.stream("big/blob.bin", chunk_size=MiB):
        assert len(chunk) <= MiB
        md5.update(chunk)
        total += len(chunk)
    assert (total, md5.hexdigest()) == (size, source.md5.hexdigest())


def test_failing_input_stream_keeps_the_old_object(store: Storage) -> None:
    """An input stream failing midway propagates its error and leaves the old object."""
    store.put("k", b"old", metadata={"v": "1"})
    source = GeneratedStream(10 * MiB, fail_after=2 * MiB)
    with pytest.raises(OSError, match="upstream connection broke"):
        store.put("k", source)  # type: ignore[arg-type]
    assert store.get("k") == b"old"
    assert store.stat("k").metadata == {"v": "1"}
    assert keys(store.list()) == ["k"]


def test_stream_yields_chunks_of_the_asked_size(store: Storage) -> None:
    """stream() cuts the content into chunks no larger than chunk_size."""
    data = pattern(10_000)
    store.put("k", data)
    chunks = list(store.stream("k", chunk_size=3000))
    assert [len(c) for c in chunks] == [3000, 3000, 3000, 1000]
    assert b"".join(chunks) == data


def test_stream_of_a_missing_key_raises_at_the_call(store: Storage) -> None:
    """A missing key fails when stream() is called, before any iteration."""
    with pytest.raises(ObjectNotFound, match="'nope'"):
        store.stream("nope")


def test_exists(store: Storage) -> None:
    """exists is True for a stored key and False otherwise, including 'directories'."""
    store.put("a/b", b"x")
    assert store.exists("a/b")
    assert not store.exists("a")
    assert not store.exists("a/c")


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get("missing"),
        lambda s: s.stat("missing"),
        lambda s: s.stream("missing"),
        lambda s: s.delete("missing"),
        lambda s: s.copy("missing", "dst"),
        lambda s: s.move("missing", "dst"),
        lambda s: s.get("dir"),
        lambda s: s.delete("dir"),
    ],
    ids=["get", "stat", "stream", "delete", "copy", "move", "get-dir", "delete-dir"],
)
def test_missing_keys_raise_object_not_found(
    store: Storage, call: Callable[[Storage], Any]
) -> None:
    """Every operation on a key with no object raises ObjectNotFound naming the key."""
    store.put("dir/file", b"x")
    with pytest.raises(ObjectNotFound, match=r"'(missing|dir)'"):
        call(store)


@pytest.mark.parametrize(
    "call",
    [
        lambda s, k: s.put(k, b"x"),
        lambda s, k: s.get(k),
        lambda s, k: s.stream(k),
        lambda s, k: s.exists(k),
        lambda s, k: s.stat(k),
        lambda s, k: s.delete(k),
        lambda s, k: s.copy(k, "ok"),
        lambda s, k: s.copy("src", k),
        lambda s, k: s.move("src", k),
        lambda s, k: s.delete_many(["src", k]),
    ],
    ids=[
        "put",
        "get",
        "stream",
        "exists",
        "stat",
        "delete",
        "copy-src",
        "copy-dst",
        "move-dst",
        "delete_many",
    ],
)
def test_invalid_keys_are_rejected(store: Storage, call: Callable[[Storage, str], Any]) -> None:
    """Malformed keys raise InvalidKey on every operation and change nothing."""
    store.put("src", b"x")
    # One store for every key: a fresh bucket per key would cost more than the checks.
    for key in INVALID_KEYS:
        with pytest.raises(InvalidKey, match="invalid key"):
            call(store, key)
    assert keys(store.list()) == ["src"]


def test_list_recursive_and_one_level(store: Storage) -> None:
    """recursive lists everything under a prefix in key order; non-recursive one level."""
    for key in ["b", "a/x", "a/y/z", "a/y/zz/deep", "a.txt", "ab", "c/d"]:
        store.put(key, key.encode())
    assert keys(store.list()) == ["a.txt", "a/x", "a/y/z", "a/y/zz/deep", "ab", "b", "c/d"]
    assert keys(store.list(recursive=False)) == ["a.txt", "ab", "b"]
    assert keys(store.list("a/")) == ["a/x", "a/y/z", "a/y/zz/deep"]
    assert keys(store.list("a/", recursive=False)) == ["a/x"]
    assert keys(store.list("a/y/", recursive=False)) == ["a/y/z"]
    assert keys(store.list("a")) == ["a.txt", "a/x", "a/y/z", "a/y/zz/deep", "ab"]
    assert keys(store.list("a/y/z")) == ["a/y/z", "a/y/zz/deep"]
    assert keys(store.list("nothing/")) == []


def test_list_gives_full_object_info(store: Storage) -> None:
    """Listed entries carry the same info as stat."""
    store.put("x/1.json", b"{}", metadata={"k": "v"})
    (listed,) = store.list("x/")
    assert listed == store.stat("x/1.json")


def test_list_rejects_invalid_prefixes(store: Storage) -> None:
    """A prefix that escapes the store is InvalidKey."""
    for prefix in ["../", "/abs", "a/../", "a\\b"]:
        with pytest.raises(InvalidKey):
            list(store.list(prefix))


def test_delete_removes_the_object(store: Storage) -> None:
    """After delete the key is gone from get, exists and list."""
    store.put("d/1", b"x")
    store.put("d/2", b"y")
    store.delete("d/1")
    assert not store.exists("d/1")
    assert keys(store.list()) == ["d/2"]
    with pytest.raises(ObjectNotFound):
        store.get("d/1")


def test_delete_many_counts_and_skips_missing(store: Storage) -> None:
    """delete_many removes what exists and returns how many it removed."""
    for key in ["a", "b", "c"]:
        store.put(key, b"x")
    assert store.delete_many(["a", "c", "missing"]) == 2
    assert keys(store.list()) == ["b"]
    assert store.delete_many([]) == 0


def test_copy_keeps_the_source_and_metadata(store: Storage) -> None:
    """copy duplicates content and metadata, replacing the destination."""
    store.put("src.txt", b"content", cache_control="no-cache", metadata={"m": "1"})
    store.put("dst.txt", b"old")
    info = store.copy("src.txt", "sub/dst.txt")
    store.copy("src.txt", "dst.txt")
    for key in ["sub/dst.txt", "dst.txt"]:
        assert store.get(key) == b"content"
        copied = store.stat(key)
        assert (copied.cache_control, copied.metadata, copied.content_type) == (
            "no-cache",
            {"m": "1"},
            "text/plain",
        )
    assert info.key == "sub/dst.txt"
    assert info.etag == store.stat("src.txt").etag
    assert store.get("src.txt") == b"content"


def test_copy_onto_itself_changes_nothing(store: Storage) -> None:
    """Copying or moving a key onto itself keeps the object."""
    store.put("same", b"x", metadata={"a": "b"})
    store.copy("same", "same")
    store.move("same", "same")
    assert store.get("same") == b"x"
    assert store.stat("same").metadata == {"a": "b"}


def test_move_renames_with_metadata(store: Storage) -> None:
    """move puts the object at dst with its metadata and removes src."""
    store.put("from/a.txt", b"payload", metadata={"m": "1"})
    store.put("to/b.txt", b"old")
    info = store.move("from/a.txt", "to/b.txt")
    assert info.key == "to/b.txt"
    assert store.get("to/b.txt") == b"payload"
    assert store.stat("to/b.txt").metadata == {"m": "1"}
    assert not store.exists("from/a.txt")
    assert keys(store.list()) == ["to/b.txt"]


def test_download_to_writes_the_file(store: Storage, tmp_path: Path) -> None:
    """download_to writes the object's bytes to a local path, replacing the file."""
    data = pattern(50_000)
    store.put("k", data)
    target = tmp_path / "out" / "file.bin"
    target.parent.mkdir()
    target.write_bytes(b"previous")
    store.download_to("k", target)
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_download_to_is_atomic(
    store: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download failing mid-stream leaves the old file as it was and no temp file."""
    store.put("k", b"new content")
    target_dir = tmp_path / "downloads"
    target_dir.mkdir()
    target = target_dir / "file.bin"
    target.write_bytes(b"previous")

    def broken_stream(key: str, chunk_size: int = 1024) -> Iterator[bytes]:
        yield b"partial"
        raise ConnectionResetError("lost the backend mid-download")

    monkeypatch.setattr(store, "stream", broken_stream)
    with pytest.raises(ConnectionResetError):
        store.download_to("k", target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in target_dir.iterdir()] == ["file.bin"]


def test_download_of_a_missing_key_creates_nothing(store: Storage, tmp_path: Path) -> None:
    """download_to of a missing key raises ObjectNotFound and writes no file."""
    with pytest.raises(ObjectNotFound):
        store.download_to("missing", tmp_path / "never.bin")
    assert list(tmp_path.glob("*.bin")) == []


def test_upload_from_streams_a_local_file(store: Storage, tmp_path: Path) -> None:
    """upload_from stores a local file; the content type falls back to the file's name."""
    source = tmp_path / "report.json"
    source.write_bytes(b'{"ok": true}')
    info = store.upload_from(source, "reports/latest", metadata={"by": "cron"})
    assert info.content_type == "application/json"
    assert store.get("reports/latest") == b'{"ok": true}'
    assert store.stat("reports/latest").metadata == {"by": "cron"}


def test_presigned_urls_work_over_http_or_are_not_supported(
    store: Storage, container: StorageContainer
) -> None:
    """S3 and GCS URLs really GET and PUT over HTTP; local and memory say they cannot presign."""
    store.put("shared/report.txt", b"for your eyes", content_type="text/plain")
    if container.backend() not in PRESIGNING:
        with pytest.raises(NotSupported, match="cannot make presigned URLs"):
            store.presigned_url("shared/report.txt")
        return
    url = store.presigned_url("shared/report.txt")
    assert url.startswith("http")
    with urllib.request.urlopen(url, timeout=10) as got:  # noqa: S310 - checked just above
        assert got.read() == b"for your eyes"
    upload = urllib.request.Request(  # noqa: S310 - the backend's own http(s) URL
        store.presigned_url("inbox/upload.csv", method="PUT", expires=60),
        data=b"a,b\n1,2\n",
        method="PUT",
        # urllib would send application/x-www-form-urlencoded; say what the bytes are.
        headers={"Content-Type": "text/csv"},
    )
    with urllib.request.urlopen(upload, timeout=10) as answer:  # noqa: S310
        assert answer.status == 200
    assert store.get("inbox/upload.csv") == b"a,b\n1,2\n"
    assert store.stat("inbox/upload.csv").content_type == "text/csv"
    with pytest.raises(ValueError, match="method"):
        store.presigned_url("shared/report.txt", method="POST")


def test_health_check_passes(container: StorageContainer) -> None:
    """The container's health check pings the store without raising."""
    container.health_check()


# The async twin


async def test_async_store_round_trip(astore: AsyncStorage) -> None:
    """put/get/stat/exists/delete work the same through the async twin."""
    assert isinstance(astore, AsyncStorage)
    info = await astore.put("a/b.txt", b"hello", metadata={"k": "v"})
    assert await astore.get("a/b.txt") == b"hello"
    assert await astore.stat("a/b.txt") == info
    assert await astore.exists("a/b.txt")
    await astore.delete("a/b.txt")
    assert not await astore.exists("a/b.txt")
    with pytest.raises(ObjectNotFound):
        await astore.get("a/b.txt")


async def test_async_stream_and_list(astore: AsyncStorage) -> None:
    """stream and list are async iterators with the sync semantics."""
    data = pattern(5000)
    await astore.put("s/data", data)
    await astore.put("s/sub/x", b"x")
    chunks = [chunk async for chunk in astore.stream("s/data", chunk_size=2000)]
    assert [len(c) for c in chunks] == [2000, 2000, 1000]
    assert [info.key async for info in astore.list("s/")] == ["s/data", "s/sub/x"]
    assert [info.key async for info in astore.list("s/", recursive=False)] == ["s/data"]


async def test_async_list_of_many_objects(astore: AsyncStorage) -> None:
    """A listing longer than one batch comes back whole and in order."""
    expected = [f"many/{i:04d}" for i in range(300)]
    for key in expected:
        await astore.put(key, b"")
    assert [info.key async for info in astore.list("many/")] == expected


async def test_async_stream_of_a_missing_key(astore: AsyncStorage) -> None:
    """A missing key raises ObjectNotFound from the async iterator."""
    with pytest.raises(ObjectNotFound):
        async for _ in astore.stream("missing"):
            pass


async def test_async_copy_move_delete_many(
    astore: AsyncStorage, container: StorageContainer, tmp_path: Path
) -> None:
    """copy, move, delete_many, download_to and upload_from through the async twin."""
    source = tmp_path / "in.txt"
    source.write_bytes(b"abc")
    await astore.upload_from(source, "one")
    await astore.copy("one", "two")
    await astore.move("two", "three")
    target = tmp_path / "out.txt"
    await astore.download_to("three", target)
    assert target.read_bytes() == b"abc"
    assert await astore.delete_many(["one", "three", "missing"]) == 2
    if container.backend() in PRESIGNING:
        assert (await astore.presigned_url("one")).startswith("http")
    else:
        with pytest.raises(NotSupported):
            await astore.presigned_url("one")


async def test_async_health_check(container: StorageContainer) -> None:
    """ahealth_check returns an awaitable that pings the store."""
    await container.ahealth_check()
