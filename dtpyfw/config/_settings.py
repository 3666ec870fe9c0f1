"""The root ``Settings`` model: one field per subsystem."""

from __future__ import annotations

__all__ = ["ServiceSettings", "Settings"]

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dtpyfw.db._settings import DatabaseSettings
from dtpyfw.ftp._settings import FtpSettings
from dtpyfw.http._settings import HttpSettings
from dtpyfw.kafka._settings import KafkaSettings
from dtpyfw.log._settings import LogSettings
from dtpyfw.messaging._settings import MessagingSettings
from dtpyfw.redis._settings import RedisSettings
from dtpyfw.security._settings import SecuritySettings
from dtpyfw.storage._settings import StorageSettings
from dtpyfw.worker._settings import WorkerSettings

# While load_settings validates the layers it merged itself, pydantic-settings must
# not read the environment a second time behind its back.
_LOADING: ContextVar[bool] = ContextVar("dtpyfw_settings_loading", default=False)


class ServiceSettings(BaseModel):
    """Who this service is: stamped on logs, messages and health reports."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="dtpyfw-service", min_length=1, description="service name")
    version: str = Field(default="0.0.0", description="service version")
    environment: str = Field(default="development", description="deployment environment")


class Settings(BaseSettings):
    """Every subsystem's settings. Subclass it to add your service's own sections.

    ``service``, ``log`` and ``http`` always exist. ``db``, ``storage``,
    ``messaging`` and ``redis`` are built only when present; an empty section
    (``db: {}`` or just ``db:``) gives that subsystem's embedded default.
    """

    model_config = SettingsConfigDict(
        env_prefix="DTPYFW_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    service: ServiceSettings = Field(default_factory=ServiceSettings, description="identity")
    log: LogSettings = Field(default_factory=LogSettings, description="logging")
    http: HttpSettings = Field(default_factory=HttpSettings, description="outgoing HTTP clients")
    db: DatabaseSettings | None = Field(default=None, description="SQL database (SQLAlchemy)")
    storage: StorageSettings | None = Field(default=None, description="object storage")
    messaging: MessagingSettings | None = Field(default=None, description="events and commands")
    redis: RedisSettings | None = Field(default=None, description="Redis client")
    kafka: KafkaSettings | None = Field(default=None, description="Kafka clients")
    ftp: FtpSettings | None = Field(default=None, description="FTP / FTPS client")
    security: SecuritySettings | None = Field(
        default=None, description="passwords, tokens and API keys"
    )
    worker: WorkerSettings | None = Field(default=None, description="background tasks")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the explicit values while :func:`load_settings` validates its layers."""
        if _LOADING.get():
            return (init_settings,)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings)


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Mark that :func:`load_settings` is validating already-merged values."""
    token = _LOADING.set(True)
    try:
        yield
    finally:
        _LOADING.reset(token)
