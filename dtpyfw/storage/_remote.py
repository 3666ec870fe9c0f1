"""What the network backends (S3, GCS) share: retries, upload sources, atomic downloads.

Retries
    :class:`Retrier` runs one backend call under the store's
    :class:`~dtpyfw.core.retry.RetryPolicy`. The backend first translates its
    library's exceptions into the dtpyfw tree; only
    :class:`~dtpyfw.core.errors.StorageUnavailable` (a connection that failed or
    dropped, a timeout, a 5xx or throttling answer) is retried, and only for
    calls the backend marks idempotent. Each retry is logged on
    ``dtpyfw.storage`` at WARNING.

Upload sources
    :func:`open_source` looks at what ``put`` was given. Content that fits in
    one request is read into memory (at most ``threshold`` bytes); anything
    larger is handed to the library as a stream. Bytes and seekable files can be
    read again from the start, so their upload is retried; a one-shot stream
    (a socket, a pipe, a generator) cannot, so it is sent once. The caller's
    stream is read at most :data:`~dtpyfw.storage._base.DEFAULT_CHUNK_SIZE`
    bytes at a time whatever the library asks for, and an exception it raises
    reaches the caller unchanged, never translated into a StorageError.
"""

from __future__ import annotations

__all__ = [
    "Retrier",
    "SourceReader",
    "UploadSource",
    "open_source",
    "skip_unaddressable",
    "verify_download",
    "write_verified",
]

import contextlib
import hashlib
import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from dtpyfw.core.errors import InvalidKey, StorageError, StorageUnavailable
from dtpyfw.core.retry import RetryPolicy
from dtpyfw.storage._base import DEFAULT_CHUNK_SIZE, ObjectInfo, open_temp, validate_key

T = TypeVar("T")

_log = logging.getLogger("dtpyfw.storage")


class Retrier:
    """Runs backend calls under a RetryPolicy, retrying StorageUnavailable only."""

    def __init__(self, backend: str, policy: RetryPolicy) -> None:
        self.backend = backend
        self.policy = policy.model_copy(update={"retry_on": (StorageUnavailable,)})

    def run(
        self,
        operation: str,
        key: str,
        call: Callable[[], T],
        *,
        idempotent: bool = True,
    ) -> T:
        """``call()`` once, or under the policy when ``idempotent``; its errors propagate."""
        if not idempotent:
            return call()
        attempt = 0

        def once() -> T:
            nonlocal attempt
            attempt += 1
            try:
                return call()
            except StorageUnavailable as exc:
                if attempt < self.policy.attempts:
                    _log.warning(
                        "%s %s of %r failed (attempt %d of %d), retrying: %s",
                        self.backend,
                        operation,
                        key,
                        attempt,
                        self.policy.attempts,
                        exc,
                        extra={
                            "backend": self.backend,
                            "operation": operation,
                            "key": key,
                            "attempt": attempt,
                        },
                    )
                raise

        return self.policy.call(once)


class UploadSource:
    """The content of one ``put``: small enough to hold, or a stream to hand over."""

    def __init__(
        self,
        *,
        small: bytes | None = None,
        stream: BinaryIO | None = None,
        head: bytes = b"",
        rewind: Callable[[], None] | None = None,
    ) -> None:
        #: The whole content, when it fits in one request.
        self.small = small
        self._stream = stream
        self._head = head
        self._rewind = rewind
        self._used = False
        self._reader: SourceReader | None = None

    @property
    def rewindable(self) -> bool:
        """True when the content can be read again from the start (so retried)."""
        return self.small is not None or self._rewind is not None

    def reader(self) -> SourceReader:
        """A fresh reader of the whole content (rewinding the source if it was read)."""
        if self._stream is None:
            raise RuntimeError("reader() of a small source: use .small")
        head = self._head
        if self._used:
            if self._rewind is None:
                raise RuntimeError("a one-shot stream cannot be read twice")
            self._rewind()
            head = b""  # the stream itself starts over, head included
        self._used = True
        self._head = b""  # the reader holds it now; drop ours so it can be freed as sent
        self._reader = SourceReader(self._stream, head)
        return self._reader

    @contextlib.contextmanager
    def caller_errors_first(self) -> Iterator[None]:
        """Re-raise the caller's own stream error, unchanged, when it caused the failure."""
        try:
            yield
        except BaseException:
            if self._reader is not None and self._reader.error is not None:
                raise self._reader.error from None
            raise


class SourceReader(io.RawIOBase):
    """A forward-only reader over ``head`` then ``stream``, with bounded reads.

    Libraries may ask for a whole multipart part at once; the caller's stream is
    still read at most DEFAULT_CHUNK_SIZE bytes per call. The first exception the
    stream raises is kept in ``error`` so it can reach the caller unchanged.
    """

    def __init__(self, stream: BinaryIO, head: bytes = b"") -> None:
        super().__init__()
        self._stream = stream
        self._head = memoryview(head)
        self._position = 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        """It is a reader."""
        return True

    def seekable(self) -> bool:
        """It only goes forward, so libraries stream it instead of seeking."""
        return False

    def tell(self) -> int:
        """Bytes handed out so far (google-resumable-media asks)."""
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative), short only at the end.

        One copy per call: a library reading a whole part gets it without the
        intermediate buffer ``RawIOBase.read`` would allocate.
        """
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(DEFAULT_CHUNK_SIZE), b""))
        pieces: list[bytes | memoryview] = []
        wanted = size
        if self._head.nbytes and wanted:
            piece = self._head[:wanted]
            pieces.append(piece)
            wanted -= piece.nbytes
            self._advance_head(piece.nbytes)
        while wanted:
            chunk = self._read_stream(min(wanted, DEFAULT_CHUNK_SIZE))
            if not chunk:
                break
            pieces.append(chunk)
            wanted -= len(chunk)
        data = b"".join(pieces)
        self._position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the head, then from the stream in bounded reads."""
        view = memoryview(buffer).cast("B")
        filled = 0
        if self._head.nbytes:
            filled = min(view.nbytes, self._head.nbytes)
            view[:filled] = self._head[:filled]
            self._advance_head(filled)
        while filled < view.nbytes:
            chunk = self._read_stream(min(view.nbytes - filled, DEFAULT_CHUNK_SIZE))
            if not chunk:
                break
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        self._position += filled
        return filled

    def _advance_head(self, count: int) -> None:
        # An exhausted view is replaced, so the head's bytes can be freed.
        self._head = self._head[count:] if count < self._head.nbytes else memoryview(b"")

    def _read_stream(self, size: int) -> bytes:
        try:
            chunk: object = self._stream.read(size)
        except BaseException as exc:
            self.error = exc
            raise
        if chunk is None:
            self.error = StorageError("the input stream is non-blocking and had no data ready")
            raise self.error
        if not isinstance(chunk, bytes | bytearray | memoryview):
            self.error = TypeError(f"data.read() must return bytes, not {type(chunk).__name__}")
            raise self.error
        return bytes(chunk)


def open_source(data: bytes | BinaryIO, threshold: int) -> UploadSource:
    """Classify ``data``: at most ``threshold`` bytes are read into memory to decide."""
    if isinstance(data, bytes | bytearray | memoryview):
        content = bytes(data)
        if len(content) <= threshold:
            return UploadSource(small=content)
        buffer = io.BytesIO(content)

        def restart() -> None:
            buffer.seek(0)

        return UploadSource(stream=buffer, rewind=restart)
    if not callable(getattr(data, "read", None)):
        raise TypeError(f"data must be bytes or a binary file-like object, not {type(data)!r}")
    start = _start_position(data)
    head = SourceReader(data).read(threshold + 1)
    if head is None:  # pragma: no cover - our reader never returns None
        raise StorageError("the input stream is non-blocking and had no data ready")
    if len(head) <= threshold:
        return UploadSource(small=head)
    if start is None:
        return UploadSource(stream=data, head=head)

    def rewind() -> None:
        data.seek(start)

    # The head already read is sent first; a retry seeks back and reads it again.
    return UploadSource(stream=data, head=head, rewind=rewind)


def _start_position(data: BinaryIO) -> int | None:
    """Where a seekable ``data`` starts, or None when it cannot be read again."""
    try:
        if not data.seekable():
            return None
        return data.tell()
    except (AttributeError, OSError, ValueError):
        return None


def write_verified(
    path: str | os.PathLike[str],
    chunks: Iterable[bytes],
    *,
    expected: ObjectInfo,
    check_md5: bool,
) -> None:
    """Write ``chunks`` to ``path`` atomically, renaming only if size (and MD5) match.

    A mismatch is StorageUnavailable (the transfer was cut or corrupted: try
    again); ``path`` keeps its old content and no temp file is left.
    """
    target = Path(path)
    fd, temp = open_temp(target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            md5 = hashlib.md5(usedforsecurity=False)
            size = 0
            for chunk in chunks:
                if check_md5:
                    md5.update(chunk)
                file.write(chunk)
                size += len(chunk)
            file.flush()
            os.fsync(file.fileno())
        verify_download(expected, size, md5.hexdigest() if check_md5 else None)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def verify_download(expected: ObjectInfo, size: int, md5: str | None) -> None:
    """Raise StorageUnavailable when what arrived is not the object announced."""
    if size != expected.size:
        raise StorageUnavailable(
            f"download of {expected.key!r} was cut short: got {size} of {expected.size} bytes"
        )
    if md5 is not None and md5 != expected.etag:
        raise StorageUnavailable(
            f"download of {expected.key!r} is corrupted: MD5 {md5} is not {expected.etag}"
        )


def skip_unaddressable(key: str) -> bool:
    """True for names written by other tools that no dtpyfw key can reach (``dir/``)."""
    try:
        validate_key(key)
    except InvalidKey:
        return True
    return False
