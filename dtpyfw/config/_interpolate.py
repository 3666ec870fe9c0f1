"""``${VAR}`` / ``${VAR:-default}`` interpolation on an already-parsed tree."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Applied to one scalar at a time, never to raw file text, so YAML syntax cannot be forged.
_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

KeyPath = tuple[str | int, ...]


def interpolate(
    data: Any, env: Mapping[str, str], missing: list[tuple[KeyPath, str]], path: KeyPath = ()
) -> Any:
    """Return ``data`` with variables substituted; unset ones are appended to ``missing``."""
    if isinstance(data, dict):
        return {k: interpolate(v, env, missing, (*path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, missing, (*path, i)) for i, v in enumerate(data)]
    if isinstance(data, str) and "$" in data:
        return _substitute(data, env, missing, path)
    return data


def _substitute(
    text: str, env: Mapping[str, str], missing: list[tuple[KeyPath, str]], path: KeyPath
) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is not None:
                return default
            missing.append((path, name))
            return ""
        return value

    return _PATTERN.sub(replace, text)
