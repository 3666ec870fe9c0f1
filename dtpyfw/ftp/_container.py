"""The FTP subsystem as a dependency-injector container.

``client`` is a Resource: the pool is created on first use and closed, with
every connection, at ``container.shutdown_resources()``. ``async_client``
wraps the same client (and pool). Building the container connects nowhere.
"""

from __future__ import annotations

__all__ = ["FtpContainer"]

from collections.abc import Iterator

from dependency_injector import containers, providers

from dtpyfw.ftp._async import AsyncFtpClient
from dtpyfw.ftp._client import FtpClient
from dtpyfw.ftp._settings import FtpSettings


def _client(settings: FtpSettings) -> Iterator[FtpClient]:
    """Yield a client for ``settings``; close its pool at shutdown."""
    with FtpClient(settings) as client:
        yield client


def _ping(client: FtpClient) -> None:
    """Log in if needed and NOOP; raise FtpError on failure."""
    client.ping()


async def _aping(client: AsyncFtpClient) -> None:
    """Async twin of :func:`_ping`."""
    await client.ping()


class FtpContainer(containers.DeclarativeContainer):
    """The FTP client; provide ``settings`` (an FtpSettings) when building it."""

    settings = providers.Dependency(instance_of=FtpSettings)
    client = providers.Resource(_client, settings)
    async_client = providers.Singleton(AsyncFtpClient, client)
    health_check = providers.Callable(_ping, client)
    ahealth_check = providers.Callable(_aping, async_client)
