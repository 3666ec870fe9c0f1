"""``load_settings``: defaults < YAML < .env < environment < overrides, one error for all."""

from __future__ import annotations

__all__ = ["load_settings"]

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

from pydantic import ValidationError

from dtpyfw.config._errors import Origins, issues_from_validation
from dtpyfw.config._interpolate import KeyPath, interpolate
from dtpyfw.config._settings import Settings, loading
from dtpyfw.config._yaml import YamlIssue, dotted, read_yaml_file
from dtpyfw.core.errors import ConfigError, ConfigIssue

S = TypeVar("S", bound=Settings)

#: Environment variable naming the YAML file when ``path`` is not given.
CONFIG_FILE_VARIABLE = "DTPYFW_CONFIG_FILE"


@overload
def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    env_file: str | Path | None = ".env",
) -> Settings: ...


@overload
def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    env_file: str | Path | None = ".env",
    settings_class: type[S],
) -> S: ...


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    env_file: str | Path | None = ".env",
    settings_class: type[Settings] = Settings,
) -> Settings:
    """Load typed settings, or raise one :class:`ConfigError` listing every problem.

    ``env`` replaces ``os.environ`` (tests pass a dict). ``overrides`` is a nested
    mapping or dotted keys (``{"db.pool_size": 5}``). ``env_file`` is read when it
    exists; pass ``None`` to skip it. With no ``path``, ``$DTPYFW_CONFIG_FILE`` is
    used when set. Environment variables whose first segment is not a known section
    are ignored, as pydantic-settings does; unknown keys inside a section are errors.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    issues: list[ConfigIssue] = []
    origins = Origins()
    merged: dict[str, Any] = {}

    dotenv = _read_dotenv(Path(env_file)) if env_file is not None else {}
    lookup = {**dotenv, **environ}
    if path is None and lookup.get(CONFIG_FILE_VARIABLE):
        path = lookup[CONFIG_FILE_VARIABLE]

    if path is not None:
        try:
            document = read_yaml_file(Path(path))
        except YamlIssue as exc:
            raise ConfigError([exc.issue]) from None
        missing: list[tuple[KeyPath, str]] = []
        data = interpolate(document.data, lookup, missing)
        for key_path, name in missing:
            issues.append(
                ConfigIssue(
                    path=dotted(key_path),
                    message=f"environment variable {name} is not set "
                    f"(write ${{{name}:-default}} to give a default)",
                    source=document.source,
                    line=document.lines.get(key_path),
                )
            )
            origins.poison(key_path)
        _merge(merged, data=data, origins=origins, source=document.source, lines=document.lines)

    prefix = str(settings_class.model_config.get("env_prefix") or "")
    delimiter = str(settings_class.model_config.get("env_nested_delimiter") or "__")
    sections = set(settings_class.model_fields)
    for label, variables in ((".env", dotenv), ("environment", environ)):
        layer = _env_layer(
            variables,
            prefix=prefix,
            delimiter=delimiter,
            sections=sections,
            issues=issues,
            label=label,
        )
        for key_path, (value, source) in layer.items():
            _set_path(merged, key_path, value)
            origins.record(key_path, source, None)

    if overrides:
        for key, value in overrides.items():
            target: KeyPath = tuple(key.split(".")) if isinstance(key, str) else (key,)
            _merge_at(merged, target, value, origins, "overrides")

    _enable_empty_sections(merged, settings_class)
    try:
        with loading():
            settings = settings_class.model_validate(merged)
    except ValidationError as exc:
        issues.extend(issues_from_validation(exc, merged, origins, settings_class))
        raise ConfigError(issues) from None
    if issues:
        raise ConfigError(issues)
    return settings


def _merge(
    target: dict[str, Any],
    *,
    data: Mapping[str, Any],
    origins: Origins,
    source: str,
    lines: Mapping[KeyPath, int],
    path: KeyPath = (),
) -> None:
    for key, value in data.items():
        key_path = (*path, key)
        origins.record(key_path, source, lines.get(key_path))
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(
                target[key], data=value, origins=origins, source=source, lines=lines, path=key_path
            )
        else:
            target[key] = _copy(value)
            if isinstance(value, dict):
                _record_all(value, origins, source, lines, key_path)


def _record_all(
    value: Mapping[str, Any],
    origins: Origins,
    source: str,
    lines: Mapping[KeyPath, int],
    path: KeyPath,
) -> None:
    for key, item in value.items():
        origins.record((*path, key), source, lines.get((*path, key)))
        if isinstance(item, dict):
            _record_all(item, origins, source, lines, (*path, key))


def _merge_at(
    target: dict[str, Any], key_path: KeyPath, value: Any, origins: Origins, source: str
) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _merge_at(target, (*key_path, key), item, origins, source)
        if not value:
            _set_path(target, key_path, {})
            origins.record(key_path, source, None)
        return
    _set_path(target, key_path, _copy(value))
    origins.record(key_path, source, None)


def _set_path(target: dict[str, Any], key_path: KeyPath, value: Any) -> None:
    node = target
    for key in key_path[:-1]:
        child = node.get(str(key))
        if not isinstance(child, dict):
            child = {}
            node[str(key)] = child
        node = child
    node[str(key_path[-1])] = value


def _env_layer(
    variables: Mapping[str, str],
    *,
    prefix: str,
    delimiter: str,
    sections: set[str],
    issues: list[ConfigIssue],
    label: str,
) -> dict[KeyPath, tuple[Any, str]]:
    layer: dict[KeyPath, tuple[Any, str]] = {}
    for name, raw in variables.items():
        if not name.upper().startswith(prefix.upper()):
            continue
        parts = [p.lower() for p in name[len(prefix) :].split(delimiter)]
        if not parts or parts[0] not in sections or any(not p for p in parts):
            continue
        source = f"{label} variable {name}"
        value: Any = raw
        stripped = raw.strip()
        if stripped[:1] in ("{", "["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                issues.append(
                    ConfigIssue(
                        path=".".join(parts), message=f"invalid JSON: {exc.msg}", source=source
                    )
                )
                continue
        layer[tuple(parts)] = (value, source)
    return layer


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values  # python-dotenv ships with pydantic-settings

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _enable_empty_sections(merged: dict[str, Any], settings_class: type[Settings]) -> None:
    # ``db:`` alone parses as null; for an optional section that means "on, with defaults".
    for name, field in settings_class.model_fields.items():
        if name in merged and merged[name] is None and field.default is None:
            merged[name] = {}


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
