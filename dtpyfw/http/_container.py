"""The HTTP subsystem as a dependency-injector container.

``clients`` is a sync-generator Resource and ``async_clients`` an
async-generator Resource; ``container.shutdown_resources()`` closes every
client they handed out (await it when ``async_clients`` was initialised).
"""

from __future__ import annotations

__all__ = ["HttpContainer"]

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from dtpyfw.http._settings import HttpSettings

if TYPE_CHECKING:
    from dtpyfw.http._clients import AsyncHttpClients, HttpClients


def _http_clients(settings: HttpSettings) -> Iterator[HttpClients]:
    """Yield :class:`HttpClients` for ``settings`` and close them at shutdown."""
    from dtpyfw.http._clients import HttpClients

    with HttpClients(settings) as clients:
        yield clients


async def _async_http_clients(settings: HttpSettings) -> AsyncIterator[AsyncHttpClients]:
    """Yield :class:`AsyncHttpClients` for ``settings`` and close them at shutdown."""
    from dtpyfw.http._clients import AsyncHttpClients

    async with AsyncHttpClients(settings) as clients:
        yield clients


class HttpContainer(containers.DeclarativeContainer):
    """Outgoing HTTP clients; provide ``settings`` when building the container."""

    settings = providers.Dependency(instance_of=HttpSettings)
    clients = providers.Resource(_http_clients, settings)
    async_clients = providers.Resource(_async_http_clients, settings)
