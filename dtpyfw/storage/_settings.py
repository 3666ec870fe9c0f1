"""Storage settings: one discriminated union on ``backend``, plus named stores."""

from __future__ import annotations

__all__ = [
    "LocalStorageSettings",
    "LocalStoreSettings",
    "MemoryStorageSettings",
    "MemoryStoreSettings",
    "StorageSettings",
    "StoreSettings",
]

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

DEFAULT_BACKEND = "local"


class _Store(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_other_backends_keys(cls, data: Any) -> Any:
        # Switching ``backend`` through the environment must not make the keys of the
        # backend you switched away from an error; keys no backend knows still are.
        if not isinstance(data, dict):
            return data
        own = set(cls.model_fields)
        others = _ALL_BACKEND_KEYS - own
        return {k: v for k, v in data.items() if k in own or k not in others}


class LocalStoreSettings(_Store):
    """Objects as files under ``root``; writes are atomic (temp file + rename)."""

    backend: Literal["local"] = Field(
        default="local", description="which implementation stores the objects"
    )
    root: Path = Field(default=Path(".var/storage"), description="directory holding the objects")


class MemoryStoreSettings(_Store):
    """Objects in process memory: for tests and throwaway runs."""

    backend: Literal["memory"] = Field(
        default="memory", description="which implementation stores the objects"
    )


def _backend_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("backend", DEFAULT_BACKEND))
    return str(getattr(value, "backend", DEFAULT_BACKEND))


StoreSettings = Annotated[
    Annotated[LocalStoreSettings, Tag("local")] | Annotated[MemoryStoreSettings, Tag("memory")],
    Discriminator(
        _backend_of,
        custom_error_type="unknown_backend",
        custom_error_message="backend must be one of: local, memory",
    ),
]


class _Stores(BaseModel):
    stores: dict[str, StoreSettings] = Field(
        default_factory=dict,
        description="extra named stores, each with its own backend (storage.stores.avatars)",
    )


class LocalStorageSettings(_Stores, LocalStoreSettings):
    """The ``storage`` section on local disk (the embedded default)."""


class MemoryStorageSettings(_Stores, MemoryStoreSettings):
    """The ``storage`` section in memory."""


StorageSettings = Annotated[
    Annotated[LocalStorageSettings, Tag("local")] | Annotated[MemoryStorageSettings, Tag("memory")],
    Discriminator(
        _backend_of,
        custom_error_type="unknown_backend",
        custom_error_message="backend must be one of: local, memory",
    ),
]

_ALL_BACKEND_KEYS: frozenset[str] = frozenset(
    set(LocalStoreSettings.model_fields) | set(MemoryStoreSettings.model_fields)
)
