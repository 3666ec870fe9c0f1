"""StorageContainer: the backend follows the settings (memory only, nothing touches disk)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter

from dtpyfw.storage import (
    AsyncStorage,
    AsyncStorageAdapter,
    LocalStorage,
    LocalStorageSettings,
    MemoryStorage,
    MemoryStorageSettings,
    StorageContainer,
    StorageSettings,
)

NEVER_CREATED = Path("/nonexistent/dtpyfw-test-root")


def test_memory_settings_give_a_memory_store() -> None:
    """backend: memory resolves store to one MemoryStorage singleton."""
    container = StorageContainer(settings=MemoryStorageSettings())
    store = container.store()
    assert isinstance(store, MemoryStorage)
    assert container.store() is store
    assert container.backend() == "memory"


def test_changing_backend_swaps_the_store_without_code_changes() -> None:
    """Overriding the settings with another backend swaps what store resolves to."""
    container = StorageContainer(settings=LocalStorageSettings(root=NEVER_CREATED))
    assert container.backend() == "local"
    assert container.store.providers["local"].cls is LocalStorage
    with container.settings.override(MemoryStorageSettings()):
        assert isinstance(container.store(), MemoryStorage)
        assert isinstance(container.async_store(), AsyncStorageAdapter)
        assert container.async_store().storage is container.store()
    assert not NEVER_CREATED.exists()


def test_settings_from_environment_style_data_pick_the_backend() -> None:
    """The storage union validates plain data to the right settings class."""
    adapter = TypeAdapter(StorageSettings)
    settings = adapter.validate_python({"backend": "memory", "root": "ignored/when/memory"})
    assert isinstance(settings, MemoryStorageSettings)
    container = StorageContainer(settings=settings)
    assert isinstance(container.store(), MemoryStorage)


def test_async_store_wraps_the_sync_store() -> None:
    """async_store is an AsyncStorage adapter over the same store object."""
    container = StorageContainer(settings=MemoryStorageSettings())
    async_store = container.async_store()
    assert isinstance(async_store, AsyncStorage)
    assert async_store.storage is container.store()
    assert container.async_store() is async_store


def test_named_stores_each_get_their_own_backend() -> None:
    """settings.stores builds one store per name, separate from the default store."""
    settings = MemoryStorageSettings.model_validate(
        {"stores": {"avatars": {"backend": "memory"}, "exports": {"backend": "memory"}}}
    )
    container = StorageContainer(settings=settings)
    stores = container.stores()
    assert sorted(stores) == ["avatars", "exports"]
    assert all(isinstance(store, MemoryStorage) for store in stores.values())
    assert stores["avatars"] is not stores["exports"]
    assert stores["avatars"] is not container.store()
    stores["avatars"].put("a", b"1")
    assert not container.store().exists("a")
    assert container.stores() is stores


def test_settings_of_the_wrong_type_are_rejected() -> None:
    """Resolving store with something that is not a storage section names both classes."""
    container = StorageContainer(settings={"backend": "memory"})
    with pytest.raises(TypeError, match="LocalStorageSettings, MemoryStorageSettings, S3Stor"):
        container.store()


def test_health_checks_with_memory() -> None:
    """health_check and ahealth_check pass for memory stores."""
    container = StorageContainer(
        settings=MemoryStorageSettings.model_validate({"stores": {"x": {"backend": "memory"}}})
    )
    container.health_check()


async def test_async_health_check_with_memory() -> None:
    """ahealth_check is awaitable and passes for memory stores."""
    container = StorageContainer(settings=MemoryStorageSettings())
    await container.ahealth_check()
