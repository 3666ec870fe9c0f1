"""``AsyncFtpClient``: the :class:`~dtpyfw.ftp.FtpClient` API, awaited.

ftplib has no asyncio twin, so every call runs the sync client in a worker
thread (:func:`asyncio.to_thread`): the event loop never waits on the network,
and both twins share one connection pool, retry policy and set of checks.
"""

from __future__ import annotations

__all__ = ["AsyncFtpClient"]

import asyncio
import builtins
import datetime
import os
from collections.abc import AsyncIterator
from typing import BinaryIO

from dtpyfw.ftp._client import FtpClient, FtpEntry, WalkStep


class AsyncFtpClient:
    """Awaitable twin of :class:`FtpClient`; ``aclose()`` closes the wrapped client."""

    def __init__(self, client: FtpClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"AsyncFtpClient({self.client!r})"

    async def __aenter__(self) -> AsyncFtpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the wrapped client's pooled connections; closing twice is harmless."""
        await asyncio.to_thread(self.client.close)

    async def list(self, path: str = "") -> builtins.list[FtpEntry]:
        """See :meth:`FtpClient.list`."""
        return await asyncio.to_thread(self.client.list, path)

    async def walk(self, top: str = "") -> AsyncIterator[WalkStep]:
        """See :meth:`FtpClient.walk`; each directory is listed in a worker thread."""
        walker = self.client.walk(top)
        while True:
            step = await asyncio.to_thread(next, walker, None)
            if step is None:
                return
            yield step

    async def exists(self, path: str) -> bool:
        """See :meth:`FtpClient.exists`."""
        return await asyncio.to_thread(self.client.exists, path)

    async def stat(self, path: str) -> FtpEntry:
        """See :meth:`FtpClient.stat`."""
        return await asyncio.to_thread(self.client.stat, path)

    async def modified(self, path: str) -> datetime.datetime:
        """See :meth:`FtpClient.modified`."""
        return await asyncio.to_thread(self.client.modified, path)

    async def upload(self, source: str | os.PathLike[str] | BinaryIO, target: str) -> FtpEntry:
        """See :meth:`FtpClient.upload`; a file-like source is read in the worker thread."""
        return await asyncio.to_thread(self.client.upload, source, target)

    async def download(self, source: str, target: str | os.PathLike[str]) -> FtpEntry:
        """See :meth:`FtpClient.download`."""
        return await asyncio.to_thread(self.client.download, source, target)

    async def rename(self, source: str, target: str) -> None:
        """See :meth:`FtpClient.rename`."""
        await asyncio.to_thread(self.client.rename, source, target)

    async def delete(self, path: str) -> None:
        """See :meth:`FtpClient.delete`."""
        await asyncio.to_thread(self.client.delete, path)

    async def makedirs(self, path: str) -> None:
        """See :meth:`FtpClient.makedirs`."""
        await asyncio.to_thread(self.client.makedirs, path)

    async def rmtree(self, path: str) -> None:
        """See :meth:`FtpClient.rmtree`."""
        await asyncio.to_thread(self.client.rmtree, path)

    async def ping(self) -> None:
        """See :meth:`FtpClient.ping`."""
        await asyncio.to_thread(self.client.ping)
