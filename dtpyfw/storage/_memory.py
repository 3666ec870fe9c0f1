"""Objects in a dict: for tests and throwaway runs, with the semantics of the real backends."""

from __future__ import annotations

__all__ = ["MemoryStorage"]

import dataclasses
import hashlib
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import BinaryIO

from dtpyfw.core.errors import ObjectNotFound
from dtpyfw.storage._base import (
    DEFAULT_CHUNK_SIZE,
    BaseStorage,
    ObjectInfo,
    iter_chunks,
    key_matches,
    normalize_metadata,
    resolve_content_type,
    validate_key,
    validate_prefix,
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Object:
    data: bytes
    info: ObjectInfo


class MemoryStorage(BaseStorage):
    """A thread-safe :class:`~dtpyfw.storage.Storage` keeping objects in process memory."""

    def __init__(self) -> None:
        self._objects: dict[str, _Object] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStorage(<{len(self._objects)} objects>)"

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store a copy of ``data`` under ``key``; see :meth:`Storage.put`."""
        validate_key(key)
        meta = normalize_metadata(metadata)
        md5 = hashlib.md5(usedforsecurity=False)
        parts = []
        for chunk in iter_chunks(data):
            md5.update(chunk)
            parts.append(chunk)
        content = b"".join(parts)
        info = ObjectInfo(
            key=key,
            size=len(content),
            etag=md5.hexdigest(),
            content_type=resolve_content_type(key, content_type),
            updated=datetime.now(UTC),
            metadata=meta,
            cache_control=cache_control,
        )
        with self._lock:
            self._objects[key] = _Object(content, info)
        return _copy_info(info)

    def get(self, key: str) -> bytes:
        """The whole content of ``key``."""
        return self._get(key).data

    def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """The content of ``key`` in chunks; a missing key raises here, not on iteration."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        return iter_chunks(self._get(key).data, chunk_size)

    def exists(self, key: str) -> bool:
        """True when ``key`` holds an object."""
        validate_key(key)
        with self._lock:
            return key in self._objects

    def stat(self, key: str) -> ObjectInfo:
        """Size, etag, content type, update time and metadata of ``key``."""
        return _copy_info(self._get(key).info)

    def list(self, prefix: str = "", recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order; see :meth:`Storage.list`."""
        validate_prefix(prefix)
        with self._lock:
            matching = [
                obj.info
                for key, obj in self._objects.items()
                if key_matches(key, prefix, recursive)
            ]
        matching.sort(key=lambda info: info.key)
        return (_copy_info(info) for info in matching)

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key raises ObjectNotFound."""
        validate_key(key)
        with self._lock:
            if self._objects.pop(key, None) is None:
                raise ObjectNotFound(f"object {key!r} does not exist")

    def copy(self, src: str, dst: str) -> ObjectInfo:
        """Copy ``src`` and its metadata to ``dst``, replacing ``dst``."""
        validate_key(dst)
        source = self._get(src)
        if src == dst:
            return _copy_info(source.info)
        info = dataclasses.replace(
            source.info, key=dst, updated=datetime.now(UTC), metadata=dict(source.info.metadata)
        )
        with self._lock:
            self._objects[dst] = _Object(source.data, info)
        return _copy_info(info)

    def move(self, src: str, dst: str) -> ObjectInfo:
        """Rename ``src`` to ``dst`` with its metadata, replacing ``dst``."""
        validate_key(src)
        validate_key(dst)
        with self._lock:
            source = self._objects.get(src)
            if source is None:
                raise ObjectNotFound(f"object {src!r} does not exist")
            if src == dst:
                return _copy_info(source.info)
            del self._objects[src]
            info = dataclasses.replace(source.info, key=dst)
            self._objects[dst] = _Object(source.data, info)
        return _copy_info(info)

    def ping(self) -> None:
        """Memory is always available."""

    def _get(self, key: str) -> _Object:
        validate_key(key)
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise ObjectNotFound(f"object {key!r} does not exist")
        return found


def _copy_info(info: ObjectInfo) -> ObjectInfo:
    # ObjectInfo is frozen but its metadata dict is not: never hand out ours.
    return dataclasses.replace(info, metadata=dict(info.metadata))
