"""A module that tests wire (or deliberately leave unwired)."""

from __future__ import annotations

from typing import Any

from dtpyfw.container import Provide, ServiceContainer, inject


@inject
def current_service_name(settings: Any = Provide[ServiceContainer.settings]) -> str:
    """Reads an injected provider's attribute."""
    return str(settings.service.name)


@inject
async def async_store_kind(store: Any = Provide[ServiceContainer.storage.store]) -> str:
    """An async function with an injected dependency."""
    return type(store).__name__
