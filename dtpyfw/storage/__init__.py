"""Object storage: one ``Storage`` interface over local disk, memory, S3 and GCS.

Resolve ``store`` (sync) or ``async_store`` from :class:`StorageContainer`,
or build a backend directly (:class:`LocalStorage`, :class:`MemoryStorage`,
:class:`S3Storage`, :class:`GcsStorage`). Keys are relative ``/``-separated
paths checked by :func:`validate_key` on every backend. S3 needs the
``storage-s3`` extra and GCS the ``storage-gcs`` one; importing this package
needs neither.
"""

from dtpyfw.storage._async import AsyncStorageAdapter
from dtpyfw.storage._base import AsyncStorage, ObjectInfo, Storage, validate_key
from dtpyfw.storage._container import StorageContainer
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
    StorageSettings,
    StoreSettings,
)

__all__ = [
    "AsyncStorage",
    "AsyncStorageAdapter",
    "GcsStorage",
    "GcsStorageSettings",
    "GcsStoreSettings",
    "LocalStorage",
    "LocalStorageSettings",
    "LocalStoreSettings",
    "MemoryStorage",
    "MemoryStorageSettings",
    "MemoryStoreSettings",
    "ObjectInfo",
    "S3Storage",
    "S3StorageSettings",
    "S3StoreSettings",
    "Storage",
    "StorageContainer",
    "StorageSettings",
    "StoreSettings",
    "validate_key",
]
