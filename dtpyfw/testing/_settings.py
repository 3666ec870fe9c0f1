"""Settings and container helpers behind the pytest fixtures (usable without pytest)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dtpyfw.config import Settings

if TYPE_CHECKING:
    from dtpyfw.container import ServiceContainer, ServiceContainerInstance


def embedded_settings(root: Path, **sections: Any) -> Settings:
    """Every subsystem on its embedded backend, with files under ``root``."""
    data: dict[str, Any] = {
        "service": {"name": "test-service", "version": "0.0.0", "environment": "test"},
        "db": {"driver": "sqlite", "name": str(root / "test.sqlite3")},
        "storage": {"backend": "memory"},
        "messaging": {"transport": "memory"},
    }
    data.update(sections)
    return Settings.model_validate(data)


@contextlib.contextmanager
def closing_container(
    settings: Settings, container_class: type[ServiceContainer] | None = None
) -> Iterator[ServiceContainerInstance]:
    """Build a container and close every resource it opened, sync or async."""
    # Imported here so that loading the pytest plugin never builds the provider modules.
    from dtpyfw.container import ServiceContainer

    container = (container_class or ServiceContainer).from_settings(settings)
    try:
        yield container
    finally:
        asyncio.run(container.ashutdown_resources())
