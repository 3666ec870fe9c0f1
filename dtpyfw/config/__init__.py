"""Typed settings from defaults, YAML, .env, the environment and explicit overrides."""

from dtpyfw.config._loader import CONFIG_FILE_VARIABLE, load_settings
from dtpyfw.config._settings import ServiceSettings, Settings
from dtpyfw.core.errors import ConfigError, ConfigIssue

__all__ = [
    "CONFIG_FILE_VARIABLE",
    "ConfigError",
    "ConfigIssue",
    "ServiceSettings",
    "Settings",
    "load_settings",
]
