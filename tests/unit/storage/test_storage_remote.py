"""The network backends' shared parts: upload sources, bounded reads, verified downloads."""

from __future__ import annotations

import datetime
import hashlib
import io
from pathlib import Path

import pytest

from dtpyfw.core.errors import StorageUnavailable
from dtpyfw.core.retry import RetryPolicy
from dtpyfw.log import capture_logs
from dtpyfw.storage import ObjectInfo
from dtpyfw.storage._remote import Retrier, SourceReader, open_source, write_verified


class OneShot(io.RawIOBase):
    """A non-seekable stream of ``size`` bytes that records its largest read."""

    def __init__(self, size: int, fail_at: int | None = None) -> None:
        self.left = size
        self.given = 0
        self.largest = 0
        self.fail_at = fail_at

    def readable(self) -> bool:
        """Raw streams must say they can be read."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` with b'x', or fail at ``fail_at``."""
        self.largest = max(self.largest, len(buffer))
        if self.fail_at is not None and self.given >= self.fail_at:
            raise ConnectionResetError("client went away")
        count = min(len(buffer), self.left)
        buffer[:count] = b"x" * count
        self.left -= count
        self.given += count
        return count


def info(data: bytes) -> ObjectInfo:
    """The ObjectInfo a backend would announce for ``data``."""
    return ObjectInfo(
        key="k",
        size=len(data),
        etag=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        content_type="application/octet-stream",
        updated=datetime.datetime.now(datetime.UTC),
    )


def test_small_content_is_held_and_retriable() -> None:
    """Bytes and short streams up to the threshold are read whole; they can be resent."""
    assert open_source(b"abc", 10).small == b"abc"
    source = open_source(OneShot(10), 10)  # type: ignore[arg-type]
    assert source.small == b"x" * 10
    assert source.rewindable


def test_large_one_shot_stream_is_streamed_once() -> None:
    """A non-seekable stream above the threshold is streamed and cannot be retried."""
    stream = OneShot(50)
    source = open_source(stream, 10)  # type: ignore[arg-type]
    assert source.small is None
    assert not source.rewindable
    assert source.reader().read() == b"x" * 50
    with pytest.raises(RuntimeError, match="one-shot"):
        source.reader()


def test_large_seekable_file_rewinds_for_a_retry() -> None:
    """A seekable file above the threshold is read again from where it started."""
    data = io.BytesIO(b"--" + bytes(range(40)))
    data.seek(2)
    source = open_source(data, 10)
    assert source.rewindable
    first = source.reader().read(15)
    assert first == bytes(range(15))
    assert source.reader().read() == bytes(range(40))


def test_reader_asks_the_caller_for_bounded_chunks() -> None:
    """However much a library asks for, the caller's stream is read 1 MiB at a time."""
    stream = OneShot(5 * 1024 * 1024)
    reader = SourceReader(stream)  # type: ignore[arg-type]
    assert len(reader.read(8 * 1024 * 1024)) == 5 * 1024 * 1024
    assert stream.largest <= 1024 * 1024
    assert reader.tell() == 5 * 1024 * 1024


def test_the_callers_error_reaches_the_caller_unchanged() -> None:
    """An error of the input stream is kept and re-raised as is, not as a StorageError."""
    source = open_source(OneShot(100, fail_at=30), 10)  # type: ignore[arg-type]
    reader = source.reader()

    def library_upload() -> None:
        with source.caller_errors_first():
            try:
                reader.read()
            except ConnectionResetError as exc:
                raise StorageUnavailable("the library wrapped it") from exc

    with pytest.raises(ConnectionResetError, match="client went away"):
        library_upload()


def test_write_verified_renames_only_a_whole_download(tmp_path: Path) -> None:
    """A short or corrupted download is StorageUnavailable and leaves the old file alone."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(StorageUnavailable, match="cut short"):
        write_verified(target, [b"abc"], expected=info(b"abcdef"), check_md5=False)
    with pytest.raises(StorageUnavailable, match="corrupted"):
        write_verified(target, [b"abX"], expected=info(b"abc"), check_md5=True)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    write_verified(target, [b"ab", b"c"], expected=info(b"abc"), check_md5=True)
    assert target.read_bytes() == b"abc"


def test_retrier_retries_only_idempotent_calls() -> None:
    """StorageUnavailable is retried (and logged) for idempotent calls, never for others."""
    retrier = Retrier("s3", RetryPolicy(attempts=3, initial_delay=0, jitter=0))
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StorageUnavailable("down")
        return "ok"

    with capture_logs(logger="dtpyfw.storage") as records:
        assert retrier.run("get", "k", flaky) == "ok"
    assert len(records) == 2
    calls.clear()
    with pytest.raises(StorageUnavailable):
        retrier.run("put", "k", flaky, idempotent=False)
    assert len(calls) == 1
