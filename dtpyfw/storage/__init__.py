"""Object storage: one ``Storage`` interface over local disk and memory (S3 and GCS to come).

Resolve ``store`` (sync) or ``async_store`` from :class:`StorageContainer`,
or build :class:`LocalStorage` / :class:`MemoryStorage` directly. Keys are
relative ``/``-separated paths checked by :func:`validate_key` on every backend.
"""

from dtpyfw.storage._async import AsyncStorageAdapter
from dtpyfw.storage._base import AsyncStorage, ObjectInfo, Storage, validate_key
from dtpyfw.storage._container import StorageContainer
from dtpyfw.storage._local import LocalStorage
from dtpyfw.storage._memory import MemoryStorage
from dtpyfw.storage._settings import (
    LocalStorageSettings,
    LocalStoreSettings,
    MemoryStorageSettings,
    MemoryStoreSettings,
    StorageSettings,
    StoreSettings,
)

__all__ = [
    "AsyncStorage",
    "AsyncStorageAdapter",
    "LocalStorage",
    "LocalStorageSettings",
    "LocalStoreSettings",
    "MemoryStorage",
    "MemoryStorageSettings",
    "MemoryStoreSettings",
    "ObjectInfo",
    "Storage",
    "StorageContainer",
    "StorageSettings",
    "StoreSettings",
    "validate_key",
]
