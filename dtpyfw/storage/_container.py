"""The storage subsystem as a dependency-injector container.

``store`` is a ``Selector`` on ``settings.backend``: changing ``backend`` in
the settings (``DTPYFW_STORAGE__BACKEND=memory``) swaps the backend with no
code change. ``stores`` holds the named stores of ``settings.stores``, each
with its own backend. Nothing connects when the container is built: a network
store is created on first use (and creates its bucket then, when told to).
"""

from __future__ import annotations

__all__ = ["StorageContainer"]

import asyncio

from dependency_injector import containers, providers

from dtpyfw.core.errors import StorageError
from dtpyfw.storage._async import AsyncStorageAdapter
from dtpyfw.storage._base import AsyncStorage, Storage
from dtpyfw.storage._gcs import GcsStorage
from dtpyfw.storage._local import LocalStorage
from dtpyfw.storage._memory import MemoryStorage
from dtpyfw.storage._s3 import S3Storage
from dtpyfw.storage._settings import (
    GcsStorageSettings,
    GcsStoreSettings,
    LocalStorageSettings,
    LocalStoreSettings,
    MemoryStorageSettings,
    MemoryStoreSettings,
    S3StorageSettings,
    S3StoreSettings,
)

_SECTION_TYPES = (
    LocalStorageSettings,
    MemoryStorageSettings,
    S3StorageSettings,
    GcsStorageSettings,
)
_Section = LocalStorageSettings | MemoryStorageSettings | S3StorageSettings | GcsStorageSettings
_Store = LocalStoreSettings | MemoryStoreSettings | S3StoreSettings | GcsStoreSettings


def _backend_of(settings: object) -> str:
    """The backend name the ``store`` Selector picks, checking what ``settings`` is."""
    if not isinstance(settings, _SECTION_TYPES):
        names = ", ".join(kind.__name__ for kind in _SECTION_TYPES)
        raise TypeError(f"StorageContainer.settings must be one of {names}, not {type(settings)!r}")
    return settings.backend


def _create_store(settings: _Store) -> Storage:
    if isinstance(settings, LocalStoreSettings):
        return LocalStorage(settings.root)
    if isinstance(settings, S3StoreSettings):
        return S3Storage(settings)
    if isinstance(settings, GcsStoreSettings):
        return GcsStorage(settings)
    return MemoryStorage()


def _named_stores(settings: _Section) -> dict[str, Storage]:
    _backend_of(settings)
    return {name: _create_store(store) for name, store in settings.stores.items()}


def _ping(store: Storage, stores: dict[str, Storage]) -> None:
    """Ping the default store, then every named one; raise on the first failure."""
    store.ping()
    _ping_named(stores)


async def _aping(store: AsyncStorage, stores: dict[str, Storage]) -> None:
    """Async twin of :func:`_ping`; the named stores are pinged in a worker thread."""
    await store.ping()
    await asyncio.to_thread(_ping_named, stores)


def _ping_named(stores: dict[str, Storage]) -> None:
    for name, named in stores.items():
        try:
            named.ping()
        except StorageError as exc:
            raise type(exc)(f"store {name!r}: {exc}") from exc


class StorageContainer(containers.DeclarativeContainer):
    """Object storage; provide ``settings`` (a ``storage`` section) when building it."""

    # A union of models: ``instance_of`` takes one class, so _backend_of checks it.
    settings: providers.Dependency[_Section] = providers.Dependency()
    backend = providers.Callable(_backend_of, settings)
    store = providers.Selector(
        backend,
        local=providers.Singleton(LocalStorage, root=settings.provided.root),
        memory=providers.Singleton(MemoryStorage),
        s3=providers.Singleton(S3Storage, settings),
        gcs=providers.Singleton(GcsStorage, settings),
    )
    # Every backend's client is synchronous: the adapter runs it in worker threads.
    # One adapter per backend, so swapping the settings swaps the async store too.
    async_store = providers.Selector(
        backend,
        local=providers.Singleton(AsyncStorageAdapter, store),
        memory=providers.Singleton(AsyncStorageAdapter, store),
        s3=providers.Singleton(AsyncStorageAdapter, store),
        gcs=providers.Singleton(AsyncStorageAdapter, store),
    )
    stores = providers.Singleton(_named_stores, settings)
    health_check = providers.Callable(_ping, store, stores)
    ahealth_check = providers.Callable(_aping, async_store, stores)
