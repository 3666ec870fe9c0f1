"""The async twin of a synchronous backend: every call runs in a worker thread.

Local disk and memory have no async API of their own, so
:class:`AsyncStorageAdapter` runs each method of the wrapped
:class:`~dtpyfw.storage.Storage` with :func:`asyncio.to_thread`: the event loop
never waits on the disk. The methods have the same names as the sync ones
(``await store.put(...)``), as ``httpx.AsyncClient`` mirrors ``httpx.Client``.
"""

from __future__ import annotations

__all__ = ["AsyncStorageAdapter"]

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import BinaryIO, TypeVar

from dtpyfw.storage._base import DEFAULT_CHUNK_SIZE, ObjectInfo, Storage

_T = TypeVar("_T")
_LIST_BATCH = 256


class AsyncStorageAdapter:
    """An :class:`~dtpyfw.storage.AsyncStorage` over a sync ``storage``."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __repr__(self) -> str:
        return f"AsyncStorageAdapter({self.storage!r})"

    async def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """See :meth:`Storage.put`; a file-like ``data`` is read in the worker thread."""
        return await asyncio.to_thread(
            self.storage.put,
            key,
            data,
            content_type=content_type,
            cache_control=cache_control,
            metadata=metadata,
        )

    async def get(self, key: str) -> bytes:
        """See :meth:`Storage.get`."""
        return await asyncio.to_thread(self.storage.get, key)

    async def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """See :meth:`Storage.stream`; each chunk is read in a worker thread."""
        async for chunk in _iterate(lambda: self.storage.stream(key, chunk_size), batch=1):
            yield chunk

    async def exists(self, key: str) -> bool:
        """See :meth:`Storage.exists`."""
        return await asyncio.to_thread(self.storage.exists, key)

    async def stat(self, key: str) -> ObjectInfo:
        """See :meth:`Storage.stat`."""
        return await asyncio.to_thread(self.storage.stat, key)

    async def list(self, prefix: str = "", recursive: bool = True) -> AsyncIterator[ObjectInfo]:
        """See :meth:`Storage.list`; entries are fetched in batches off the event loop."""
        async for info in _iterate(lambda: self.storage.list(prefix, recursive), _LIST_BATCH):
            yield info

    async def delete(self, key: str) -> None:
        """See :meth:`Storage.delete`."""
        await asyncio.to_thread(self.storage.delete, key)

    async def delete_many(self, keys: Iterable[str]) -> int:
        """See :meth:`Storage.delete_many`."""
        return await asyncio.to_thread(self.storage.delete_many, tuple(keys))

    async def copy(self, src: str, dst: str) -> ObjectInfo:
        """See :meth:`Storage.copy`."""
        return await asyncio.to_thread(self.storage.copy, src, dst)

    async def move(self, src: str, dst: str) -> ObjectInfo:
        """See :meth:`Storage.move`."""
        return await asyncio.to_thread(self.storage.move, src, dst)

    async def download_to(self, key: str, path: str | os.PathLike[str]) -> None:
        """See :meth:`Storage.download_to`."""
        await asyncio.to_thread(self.storage.download_to, key, path)

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
        return await asyncio.to_thread(
            self.storage.upload_from,
            path,
            key,
            content_type=content_type,
            cache_control=cache_control,
            metadata=metadata,
        )

    async def presigned_url(self, key: str, method: str = "GET", expires: int = 3600) -> str:
        """See :meth:`Storage.presigned_url`."""
        return await asyncio.to_thread(self.storage.presigned_url, key, method, expires)

    async def ping(self) -> None:
        """See :meth:`Storage.ping`."""
        await asyncio.to_thread(self.storage.ping)


async def _iterate(make: Callable[[], Iterator[_T]], batch: int) -> AsyncIterator[_T]:
    """Drive the iterator ``make()`` returns from worker threads, ``batch`` items per hop."""
    iterator = await asyncio.to_thread(make)
    try:
        while True:
            items = await asyncio.to_thread(_take, iterator, batch)
            for item in items:
                yield item
            if len(items) < batch:
                return
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # a generator's cleanup: closing a file, never slow


def _take(iterator: Iterator[_T], count: int) -> list[_T]:
    items: list[_T] = []
    for item in iterator:
        items.append(item)
        if len(items) == count:
            break
    return items
