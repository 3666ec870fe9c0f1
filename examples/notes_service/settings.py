"""The example's own settings: the root Settings plus ``api`` and ``demo_user`` sections."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from dtpyfw.api import ApiSettings
from dtpyfw.config import Settings
from dtpyfw.container import ServiceContainer


class DemoUserSettings(BaseModel):
    """A user created at start when missing, so that `make run` can log in at once."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="create the demo user at start")
    username: str = Field(default="demo", min_length=1, description="its user name")
    # A documented default for local runs only: set NOTES_DEMO_PASSWORD (or disable
    # the demo user) anywhere else.
    password: SecretStr = Field(
        default=SecretStr("demo-password"), description="its password (local runs only)"
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["notes:read", "notes:write"], description="its scopes"
    )


class NotesSettings(Settings):
    """Settings of the notes service."""

    api: ApiSettings = Field(default_factory=ApiSettings, description="HTTP options")
    demo_user: DemoUserSettings = Field(
        default_factory=DemoUserSettings, description="the seeded demo user"
    )


class NotesContainer(ServiceContainer):
    """The container of the notes service: ServiceContainer with NotesSettings."""

    settings_class: ClassVar[type[Settings]] = NotesSettings
