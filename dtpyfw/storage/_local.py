"""Objects as files under a root directory.

Layout under ``root``:

- the object ``a/b.png`` is the file ``root/a/b.png``;
- its content type, cache control, metadata and etag live in a JSON sidecar,
  ``root/.dtpyfw-meta/a/b.png``, a tree that mirrors the objects (so two keys
  collide there exactly when their files collide);
- writes go to a ``.dtpyfw-tmp-*`` file in the destination directory and are
  renamed into place with ``os.replace``, so readers see the old object or the
  new one, never a partial one.

Every path segment starting with ``.dtpyfw-`` is reserved: such keys are
rejected and such files are never listed. Keys are resolved like paths: a
symlink that stays inside the root is followed, one that leads out of it (or
into the reserved names) makes the key InvalidKey. ``list`` does not descend
into symlinked directories and skips symlinks it could not read through.

The sidecar records the size, mtime and inode of the file it describes; when
the file was changed behind the store's back, the sidecar is ignored and the
etag is recomputed from the content.

Directories are created on write and removed again when their last object
goes, as if they did not exist (as on S3 and GCS). A key cannot be both an
object and a "directory" on disk (``a`` and ``a/b``): that write raises
StorageError.
"""

from __future__ import annotations

__all__ = ["LocalStorage"]

import contextlib
import hashlib
import json
import os
import stat as stat_module
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from dtpyfw.core.errors import (
    AccessDenied,
    InvalidKey,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)
from dtpyfw.storage._base import (
    DEFAULT_CHUNK_SIZE,
    BaseStorage,
    ObjectInfo,
    iter_chunks,
    key_matches,
    normalize_metadata,
    open_temp,
    resolve_content_type,
    validate_key,
    validate_prefix,
)

#: Segment prefix of every name the store keeps for itself.
RESERVED_PREFIX = ".dtpyfw-"
META_DIR = ".dtpyfw-meta"
_SIDECAR_VERSION = 1
_MAKE_DIR_ATTEMPTS = 5


class LocalStorage(BaseStorage):
    """A :class:`~dtpyfw.storage.Storage` keeping objects as files under ``root``.

    ``root`` is created on construction unless ``create=False``.
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        path = Path(root)
        if create:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageUnavailable(
                    f"cannot create storage root {str(path)!r}: {exc}"
                ) from exc
        self.root = path.resolve()
        self._meta_root = self.root / META_DIR

    def __repr__(self) -> str:
        return f"LocalStorage(root={str(self.root)!r})"

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store ``data`` under ``key`` atomically; see :meth:`Storage.put`."""
        path = self._path(key)
        meta = normalize_metadata(metadata)
        # Only the store's own I/O is translated: errors of the caller's stream propagate as-is.
        return self._write(
            key,
            path=path,
            chunks=iter_chunks(data),
            content_type=resolve_content_type(key, content_type),
            cache_control=cache_control,
            metadata=meta,
        )

    def get(self, key: str) -> bytes:
        """The whole content of ``key``."""
        path = self._path(key)
        with _os_errors(key):
            return path.read_bytes()

    def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """The content of ``key`` in chunks; a missing key raises here, not on iteration."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        path = self._path(key)
        self._regular_file_stat(key, path)
        # The file is opened by the generator, so one that is never iterated holds nothing.
        return self._chunks(key, path, chunk_size)

    def exists(self, key: str) -> bool:
        """True when ``key`` holds an object."""
        path = self._path(key)
        try:
            self._regular_file_stat(key, path)
        except ObjectNotFound:
            return False
        return True

    def stat(self, key: str) -> ObjectInfo:
        """Size, etag, content type, mtime and metadata of ``key``."""
        return self._info(key, self._path(key))

    def list(self, prefix: str = "", recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order; see :meth:`Storage.list`."""
        validate_prefix(prefix)
        head = prefix.rpartition("/")[0]
        if any(part.startswith(RESERVED_PREFIX) for part in head.split("/")):
            return iter(())  # the store's own files are never objects
        start = self.root / head if head else self.root
        if not start.resolve().is_relative_to(self.root):
            raise InvalidKey(f"invalid prefix {prefix!r}: it resolves outside the storage root")
        return self._walk(start, f"{head}/" if head else "", prefix, recursive)

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key raises ObjectNotFound."""
        path = self._path(key)
        with _os_errors(key):
            if path.is_dir():
                raise FileNotFoundError(f"{path} is a directory")
            os.unlink(path)
        meta_path = self._meta_path(path)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(meta_path)
        self._prune(path.parent, self.root)
        self._prune(meta_path.parent, self._meta_root)

    def copy(self, src: str, dst: str) -> ObjectInfo:
        """Copy ``src`` and its metadata to ``dst``, replacing ``dst`` atomically."""
        src_path, dst_path = self._path(src), self._path(dst)
        if src_path == dst_path:
            return self._info(src, src_path)
        info = self._info(src, src_path)
        with _os_errors(src):
            file = src_path.open("rb")
        with file:
            return self._write(
                dst,
                path=dst_path,
                chunks=_guarded(iter_chunks(file), src),
                content_type=info.content_type,
                cache_control=info.cache_control,
                metadata=info.metadata,
            )

    def move(self, src: str, dst: str) -> ObjectInfo:
        """Rename ``src`` to ``dst`` with its metadata, replacing ``dst`` atomically."""
        src_path, dst_path = self._path(src), self._path(dst)
        if src_path == dst_path:
            return self._info(src, src_path)
        self._regular_file_stat(src, src_path)
        src_meta, dst_meta = self._meta_path(src_path), self._meta_path(dst_path)
        with _os_errors(dst, writing=True):
            self._make_dirs(dst_path.parent)
            os.replace(src_path, dst_path)
            if src_meta.is_file():
                self._make_dirs(dst_meta.parent)
                os.replace(src_meta, dst_meta)
            else:
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    os.unlink(dst_meta)
        self._prune(src_path.parent, self.root)
        self._prune(src_meta.parent, self._meta_root)
        return self._info(dst, dst_path)

    def ping(self) -> None:
        """Raise StorageUnavailable unless ``root`` is a directory we can write to."""
        if not self.root.is_dir():
            raise StorageUnavailable(f"storage root {str(self.root)!r} is not a directory")
        try:
            fd, probe = open_temp(self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StorageUnavailable(
                f"storage root {str(self.root)!r} is not writable: {exc}"
            ) from exc

    # Paths

    def _path(self, key: str) -> Path:
        validate_key(key)
        resolved = (self.root / key).resolve()
        if not resolved.is_relative_to(self.root) or resolved == self.root:
            raise InvalidKey(
                f"invalid key {key!r}: it resolves outside the storage root (through a symlink)"
            )
        # Checked on the resolved path, so a symlink cannot reach the store's own files either.
        if any(part.startswith(RESERVED_PREFIX) for part in resolved.relative_to(self.root).parts):
            raise InvalidKey(
                f"invalid key {key!r}: path segments starting with {RESERVED_PREFIX!r} are "
                "reserved by LocalStorage"
            )
        return resolved

    def _meta_path(self, path: Path) -> Path:
        return self._meta_root / path.relative_to(self.root)

    def _make_dirs(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)

    def _prune(self, directory: Path, stop: Path) -> None:
        """Remove ``directory`` and its parents up to ``stop`` while they are empty."""
        while directory != stop and directory.is_relative_to(stop):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = directory.parent

    # Reading

    def _regular_file_stat(self, key: str, path: Path) -> os.stat_result:
        with _os_errors(key):
            result = os.stat(path)
        if not stat_module.S_ISREG(result.st_mode):
            raise ObjectNotFound(f"object {key!r} does not exist")
        return result

    def _info(self, key: str, path: Path) -> ObjectInfo:
        result = self._regular_file_stat(key, path)
        sidecar = self._read_sidecar(path, result)
        updated = datetime.fromtimestamp(result.st_mtime_ns / 1e9, tz=UTC)
        if sidecar is None:
            with _os_errors(key), path.open("rb") as file:
                etag = hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False))
            return ObjectInfo(
                key=key,
                size=result.st_size,
                etag=etag.hexdigest(),
                content_type=resolve_content_type(key, None),
                updated=updated,
            )
        return ObjectInfo(
            key=key,
            size=result.st_size,
            etag=sidecar["etag"],
            content_type=sidecar["content_type"],
            updated=updated,
            metadata=dict(sidecar["metadata"]),
            cache_control=sidecar["cache_control"],
        )

    def _read_sidecar(self, path: Path, result: os.stat_result) -> dict[str, Any] | None:
        """The sidecar of ``path`` when it describes the file as it is now, else None."""
        try:
            sidecar = json.loads(self._meta_path(path).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(sidecar, dict) or sidecar.get("version") != _SIDECAR_VERSION:
            return None
        current = (result.st_size, result.st_mtime_ns, result.st_ino)
        if (sidecar.get("size"), sidecar.get("mtime_ns"), sidecar.get("ino")) != current:
            return None
        return sidecar

    def _chunks(self, key: str, path: Path, chunk_size: int) -> Iterator[bytes]:
        with _os_errors(key):
            file = path.open("rb")
        with file:
            while chunk := file.read(chunk_size):
                yield chunk

    def _walk(
        self, directory: Path, base: str, prefix: str, recursive: bool
    ) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(directory) as scan:
                entries = [entry for entry in scan if not entry.name.startswith(RESERVED_PREFIX)]
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sorting a directory as name + "/" makes the walk yield keys in string order.
        entries.sort(key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        for entry in entries:
            key = base + entry.name
            if entry.is_dir(follow_symlinks=False):
                below = f"{key}/"
                if recursive and (below.startswith(prefix) or prefix.startswith(below)):
                    yield from self._walk(Path(entry.path), below, prefix, recursive)
                continue
            if not key_matches(key, prefix, recursive):
                continue
            try:
                # The same checks and the same (resolved) path as a direct stat(key).
                yield self._info(key, self._path(key))
            except (InvalidKey, ObjectNotFound):
                continue  # a name no key can reach, or removed while we listed

    # Writing

    def _write(
        self,
        key: str,
        *,
        path: Path,
        chunks: Iterator[bytes],
        content_type: str,
        cache_control: str | None,
        metadata: dict[str, str],
    ) -> ObjectInfo:
        meta_path = self._meta_path(path)
        with _os_errors(key, writing=True):
            fd, temp = self._open_temp(path.parent)
        meta_temp: Path | None = None
        try:
            with os.fdopen(fd, "wb") as file:
                md5 = hashlib.md5(usedforsecurity=False)
                for chunk in chunks:
                    md5.update(chunk)
                    with _os_errors(key, writing=True):
                        file.write(chunk)
                with _os_errors(key, writing=True):
                    file.flush()
                    os.fsync(file.fileno())
            etag = md5.hexdigest()
            with _os_errors(key, writing=True):
                result = os.stat(temp)
                sidecar = {
                    "version": _SIDECAR_VERSION,
                    "etag": etag,
                    "size": result.st_size,
                    "mtime_ns": result.st_mtime_ns,
                    "ino": result.st_ino,
                    "content_type": content_type,
                    "cache_control": cache_control,
                    "metadata": metadata,
                }
                meta_fd, meta_temp = self._open_temp(meta_path.parent)
                with os.fdopen(meta_fd, "wb") as meta_file:
                    meta_file.write(json.dumps(sidecar).encode())
                os.replace(temp, path)
        except BaseException:
            for leftover in (temp, meta_temp):
                if leftover is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(leftover)
            raise
        try:
            with _os_errors(key, writing=True):
                os.replace(meta_temp, meta_path)
        except BaseException:
            # The object is written; its stale sidecar no longer matches it and is ignored.
            with contextlib.suppress(OSError):
                os.unlink(meta_temp)
            raise
        return ObjectInfo(
            key=key,
            size=result.st_size,
            etag=etag,
            content_type=content_type,
            updated=datetime.fromtimestamp(result.st_mtime_ns / 1e9, tz=UTC),
            metadata=dict(metadata),
            cache_control=cache_control,
        )

    def _open_temp(self, directory: Path) -> tuple[int, Path]:
        # A concurrent delete may prune the directory between mkdir and open: try again.
        for _ in range(_MAKE_DIR_ATTEMPTS - 1):
            self._make_dirs(directory)
            try:
                return open_temp(directory)
            except FileNotFoundError:
                continue
        self._make_dirs(directory)
        return open_temp(directory)


def _guarded(chunks: Iterator[bytes], key: str) -> Iterator[bytes]:
    """``chunks`` read from the object ``key``, with its OSErrors translated."""
    while True:
        with _os_errors(key):
            chunk = next(chunks, None)
        if chunk is None:
            return
        yield chunk


@contextlib.contextmanager
def _os_errors(key: str, *, writing: bool = False) -> Iterator[None]:
    """Turn an ``OSError`` about ``key`` into the matching StorageError, chained."""
    try:
        yield
    except PermissionError as exc:
        raise AccessDenied(f"access to object {key!r} was denied: {exc.strerror}") from exc
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        if writing:
            raise StorageError(
                f"cannot write object {key!r}: it collides with an existing object or "
                f"'directory' on disk ({exc.strerror})"
            ) from exc
        raise ObjectNotFound(f"object {key!r} does not exist") from exc
    except FileNotFoundError as exc:
        if writing:
            raise StorageError(f"cannot write object {key!r}: {exc}") from exc
        raise ObjectNotFound(f"object {key!r} does not exist") from exc
    except OSError as exc:
        raise StorageError(f"storage operation on {key!r} failed: {exc}") from exc
