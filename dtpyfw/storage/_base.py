"""What every storage backend promises: the protocols, ``ObjectInfo`` and key rules.

A key is a relative, ``/``-separated path such as ``avatars/2024/alice.png``.
:func:`validate_key` enforces the rules every backend shares, so a key that
works on local disk also works on S3 or GCS and the other way round:

- not empty, at most 1024 bytes in UTF-8;
- no leading ``/`` (keys are relative), no empty segment (``a//b``, ``a/``);
- no ``.`` or ``..`` segment, no backslash, no NUL character.

A broken rule raises :class:`~dtpyfw.core.errors.InvalidKey` naming the key
and the rule.
"""

from __future__ import annotations

__all__ = [
    "AsyncStorage",
    "BaseStorage",
    "DEFAULT_CHUNK_SIZE",
    "MAX_KEY_BYTES",
    "ObjectInfo",
    "Storage",
    "copy_hashing",
    "iter_chunks",
    "key_matches",
    "normalize_metadata",
    "open_temp",
    "resolve_content_type",
    "validate_key",
    "validate_prefix",
    "write_atomically",
]

import contextlib
import hashlib
import mimetypes
import os
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from dtpyfw.core.errors import InvalidKey, NotSupported, ObjectNotFound, StorageError

#: Bytes read from a file-like ``put`` input, or yielded by ``stream``, at a time.
DEFAULT_CHUNK_SIZE = 1024 * 1024
#: The longest key, in UTF-8 bytes (the S3 and GCS limit).
MAX_KEY_BYTES = 1024
#: Content type stored when neither the caller nor the key's extension gives one.
DEFAULT_CONTENT_TYPE = "application/octet-stream"
#: Prefix of the temporary files written next to their destination.
TEMP_PREFIX = ".dtpyfw-tmp-"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a backend knows about one stored object."""

    key: str
    size: int
    #: MD5 of the content, lowercase hex.
    etag: str
    content_type: str
    #: When the object was last written (timezone-aware, UTC).
    updated: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    cache_control: str | None = None


@runtime_checkable
class Storage(Protocol):
    """A synchronous object store; every backend implements all of it.

    Missing keys raise :class:`~dtpyfw.core.errors.ObjectNotFound` (``delete``
    included); malformed keys raise :class:`~dtpyfw.core.errors.InvalidKey`.
    """

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store ``data`` under ``key``, replacing any object there.

        A file-like ``data`` is read in chunks, never whole. ``content_type``
        defaults to a guess from the key's extension, then
        ``application/octet-stream``.
        """
        ...

    def get(self, key: str) -> bytes:
        """The whole content of ``key``."""
        ...

    def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """The content of ``key`` in chunks of at most ``chunk_size`` bytes."""
        ...

    def exists(self, key: str) -> bool:
        """True when ``key`` holds an object."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Size, etag, content type, update time and metadata of ``key``."""
        ...

    def list(self, prefix: str = "", recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order.

        With ``recursive=False`` only keys with no ``/`` after the prefix are
        listed: one "directory" level, without the sub-directories.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key raises ObjectNotFound."""
        ...

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove every key that exists and return how many were removed.

        All keys are validated before anything is removed; missing keys are skipped.
        """
        ...

    def copy(self, src: str, dst: str) -> ObjectInfo:
        """Copy ``src`` with its metadata to ``dst`` (replacing it)."""
        ...

    def move(self, src: str, dst: str) -> ObjectInfo:
        """Move ``src`` with its metadata to ``dst`` (replacing it)."""
        ...

    def download_to(self, key: str, path: str | os.PathLike[str]) -> None:
        """Write ``key`` to the local file ``path`` atomically (temp file + rename)."""
        ...

    def upload_from(
        self,
        path: str | os.PathLike[str],
        key: str,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store the local file ``path`` under ``key``, streaming it."""
        ...

    def presigned_url(self, key: str, method: str = "GET", expires: int = 3600) -> str:
        """A URL granting ``method`` on ``key`` for ``expires`` seconds.

        Backends that cannot serve objects over HTTP raise NotSupported.
        """
        ...

    def ping(self) -> None:
        """Raise StorageUnavailable when the backend cannot serve requests."""
        ...


@runtime_checkable
class AsyncStorage(Protocol):
    """The async twin of :class:`Storage`: the same methods, awaited.

    ``stream`` and ``list`` return async iterators (``async for``).
    """

    async def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """See :meth:`Storage.put`."""
        ...

    async def get(self, key: str) -> bytes:
        """See :meth:`Storage.get`."""
        ...

    def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """See :meth:`Storage.stream`."""
        ...

    async def exists(self, key: str) -> bool:
        """See :meth:`Storage.exists`."""
        ...

    async def stat(self, key: str) -> ObjectInfo:
        """See :meth:`Storage.stat`."""
        ...

    def list(self, prefix: str = "", recursive: bool = True) -> AsyncIterator[ObjectInfo]:
        """See :meth:`Storage.list`."""
        ...

    async def delete(self, key: str) -> None:
        """See :meth:`Storage.delete`."""
        ...

    async def delete_many(self, keys: Iterable[str]) -> int:
        """See :meth:`Storage.delete_many`."""
        ...

    async def copy(self, src: str, dst: str) -> ObjectInfo:
        """See :meth:`Storage.copy`."""
        ...

    async def move(self, src: str, dst: str) -> ObjectInfo:
        """See :meth:`Storage.move`."""
        ...

    async def download_to(self, key: str, path: str | os.PathLike[str]) -> None:
        """See :meth:`Storage.download_to`."""
        ...

    async def upload_from(
        self,
        path: str | os.PathLike[str],
        key: str,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """See :meth:`Storage.upload_from`."""
        ...

    async def presigned_url(self, key: str, method: str = "GET", expires: int = 3600) -> str:
        """See :meth:`Storage.presigned_url`."""
        ...

    async def ping(self) -> None:
        """See :meth:`Storage.ping`."""
        ...


class BaseStorage:
    """The parts of :class:`Storage` that follow from the other methods.

    Backends subclass it and override what their service does better natively.
    """

    def exists(self, key: str) -> bool:
        """True when ``key`` holds an object."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove every key that exists and return how many were removed.

        All keys are validated before anything is removed; missing keys are skipped.
        """
        valid = [validate_key(key) for key in keys]
        removed = 0
        for key in valid:
            try:
                self.delete(key)
            except ObjectNotFound:
                continue
            removed += 1
        return removed

    def download_to(self, key: str, path: str | os.PathLike[str]) -> None:
        """Write ``key`` to the local file ``path`` atomically (temp file + rename).

        When the download fails part way, ``path`` keeps its old content (or stays
        absent) and no temp file is left behind. Problems with ``path`` itself
        (missing directory, permissions) raise the ``OSError`` unchanged.
        """
        write_atomically(path, self.stream(key))

    def upload_from(
        self,
        path: str | os.PathLike[str],
        key: str,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store the local file ``path`` under ``key``, streaming it.

        The content type defaults to a guess from ``key``, then from ``path``.
        A missing or unreadable ``path`` raises the ``OSError`` unchanged.
        """
        validate_key(key)
        if content_type is None:
            content_type, _ = mimetypes.guess_type(key.rsplit("/", 1)[-1], strict=False)
        if content_type is None:
            content_type, _ = mimetypes.guess_type(Path(path).name, strict=False)
        with open(path, "rb") as file:
            return self.put(
                key,
                file,
                content_type=content_type,
                cache_control=cache_control,
                metadata=metadata,
            )

    def presigned_url(self, key: str, method: str = "GET", expires: int = 3600) -> str:
        """Raise NotSupported: this backend keeps objects where no HTTP client can fetch them."""
        raise NotSupported(
            f"{type(self).__name__} cannot make presigned URLs: its objects are not served "
            "over HTTP. Serve the object through your own endpoint, or use a backend that "
            "supports presigned URLs (s3, gcs)."
        )

    # The primitives every backend implements.

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """See :meth:`Storage.put`."""
        raise NotImplementedError

    def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """See :meth:`Storage.stream`."""
        raise NotImplementedError

    def stat(self, key: str) -> ObjectInfo:
        """See :meth:`Storage.stat`."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """See :meth:`Storage.delete`."""
        raise NotImplementedError


def validate_key(key: str) -> str:
    """Return ``key`` unchanged, or raise InvalidKey naming the rule it breaks."""
    if not isinstance(key, str):
        raise InvalidKey(f"invalid key {key!r}: must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKey("invalid key '': must not be empty")
    _check_characters(key)
    if key.startswith("/"):
        raise _invalid(key, "must be relative (no leading '/')")
    for segment in key.split("/"):
        _check_segment(key, segment)
    return key


def validate_prefix(prefix: str) -> str:
    """Return a listing prefix unchanged, or raise InvalidKey.

    A prefix follows the key rules, except that it may be empty, may end with
    ``/`` and may end in the middle of a segment (``photos/20`` matches
    ``photos/2024/a.png``).
    """
    if not isinstance(prefix, str):
        raise InvalidKey(f"invalid prefix {prefix!r}: must be a str, not {type(prefix).__name__}")
    if not prefix:
        return prefix
    _check_characters(prefix)
    if prefix.startswith("/"):
        raise _invalid(prefix, "must be relative (no leading '/')")
    segments = prefix.split("/")
    if segments[-1] == "":
        segments.pop()
    for segment in segments:
        _check_segment(prefix, segment)
    return prefix


def key_matches(key: str, prefix: str, recursive: bool) -> bool:
    """True when ``list(prefix, recursive)`` includes ``key``."""
    return key.startswith(prefix) and (recursive or "/" not in key[len(prefix) :])


def resolve_content_type(key: str, content_type: str | None) -> str:
    """The given content type, else a guess from the key's extension, else octet-stream."""
    if content_type:
        return content_type
    guessed, _ = mimetypes.guess_type(key.rsplit("/", 1)[-1], strict=False)
    return guessed or DEFAULT_CONTENT_TYPE


def normalize_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """A private ``dict`` copy of user metadata; keys and values must be ``str``."""
    if metadata is None:
        return {}
    out: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name:
            raise TypeError(
                f"metadata must map non-empty str to str; got {name!r}: {type(value).__name__}"
            )
        out[name] = value
    return out


def iter_chunks(data: bytes | BinaryIO, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """``data`` as chunks: bytes are sliced, a file-like is read ``chunk_size`` at a time."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), chunk_size):
            yield bytes(view[start : start + chunk_size])
        return
    read = getattr(data, "read", None)
    if read is None:
        raise TypeError(f"data must be bytes or a binary file-like object, not {type(data)!r}")
    while True:
        chunk = read(chunk_size)
        if chunk is None:
            raise StorageError("the input stream is non-blocking and had no data ready")
        if not chunk:
            return
        if not isinstance(chunk, bytes | bytearray):
            raise TypeError(f"data.read() must return bytes, not {type(chunk).__name__}")
        yield bytes(chunk)


def write_atomically(path: str | os.PathLike[str], chunks: Iterable[bytes]) -> tuple[int, str]:
    """Write ``chunks`` to ``path`` through a temp file in the same directory and rename it.

    Either the whole content lands at ``path`` or, if anything fails (including
    the ``chunks`` iterator), ``path`` is untouched and the temp file is removed.
    Returns the size written and its MD5 hex digest.
    """
    target = Path(path)
    fd, temp = open_temp(target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            size, digest = copy_hashing(chunks, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return size, digest


def open_temp(directory: Path) -> tuple[int, Path]:
    """Create a new, empty temp file in ``directory`` (honouring the umask)."""
    while True:
        temp = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temp
        except FileExistsError:  # pragma: no cover - 64 random bits collided
            continue


def copy_hashing(chunks: Iterable[bytes], file: BinaryIO) -> tuple[int, str]:
    """Write ``chunks`` to ``file``; return the size and MD5 hex digest of what was written."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    for chunk in chunks:
        md5.update(chunk)
        file.write(chunk)
        size += len(chunk)
    return size, md5.hexdigest()


def _check_characters(key: str) -> None:
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(key, "must be valid UTF-8 (no lone surrogates)") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise _invalid(key, f"must be at most {MAX_KEY_BYTES} bytes in UTF-8, not {len(encoded)}")
    if "\x00" in key:
        raise _invalid(key, "must not contain a NUL character")
    if "\\" in key:
        raise _invalid(key, "must not contain a backslash; separate segments with '/'")


def _check_segment(key: str, segment: str) -> None:
    if segment == "":
        raise _invalid(key, "must not contain an empty segment ('//' or a trailing '/')")
    if segment in {".", ".."}:
        raise _invalid(key, f"must not contain a {segment!r} segment")


def _invalid(key: str, rule: str) -> InvalidKey:
    shown = key if len(key) <= 120 else f"{key[:117]}..."
    return InvalidKey(f"invalid key {shown!r}: {rule}")
