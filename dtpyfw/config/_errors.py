"""Turn pydantic validation errors into ConfigIssues with file, line and key path."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from dtpyfw.config._yaml import KeyPath, dotted
from dtpyfw.core.errors import ConfigIssue

MASK = "**********"
_SECRET_NAME = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|credential", re.I
)


class Origins:
    """Where the value at each key path came from (the last layer that set it)."""

    def __init__(self) -> None:
        self._where: dict[KeyPath, tuple[str, int | None]] = {}
        self._poisoned: set[KeyPath] = set()

    def record(self, path: KeyPath, source: str, line: int | None) -> None:
        self._where[path] = (source, line)
        # A later layer replacing a whole subtree owns the keys below it too.
        for key in [k for k in self._where if len(k) > len(path) and k[: len(path)] == path]:
            if self._where[key][0] != source:
                del self._where[key]

    def poison(self, path: KeyPath) -> None:
        """Errors at ``path`` are already reported (e.g. a missing variable)."""
        self._poisoned.add(path)

    def is_poisoned(self, path: KeyPath) -> bool:
        return path in self._poisoned

    def lookup(self, path: KeyPath) -> tuple[str | None, int | None]:
        """The origin of ``path`` or of its nearest ancestor that has one."""
        for end in range(len(path), 0, -1):
            found = self._where.get(path[:end])
            if found is not None:
                return found
        return (None, None)


def issues_from_validation(
    exc: ValidationError, data: dict[str, Any], origins: Origins, model: type[BaseModel]
) -> list[ConfigIssue]:
    """One issue per pydantic error, pointing at the key the user wrote."""
    issues: list[ConfigIssue] = []
    seen: set[tuple[KeyPath, str]] = set()
    for error in exc.errors(include_url=False):
        path = _data_path(error["loc"], data)
        if error["type"] == "unknown_backend" and isinstance(_value_at(data, path), dict):
            path = (*path, "backend")
        if origins.is_poisoned(path):
            continue
        message = _message(error, path, data, model)
        if (path, message) in seen:
            continue
        seen.add((path, message))
        source, line = origins.lookup(path)
        issues.append(ConfigIssue(path=dotted(path), message=message, source=source, line=line))
    return issues


def _data_path(loc: tuple[int | str, ...], data: Any) -> KeyPath:
    # pydantic puts union tags and validator names into ``loc``; keep only real keys.
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        if _has(node, part):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and index == len(loc) - 1:
            path.append(part)  # a missing key: the path ends where it should have been
        elif isinstance(node, dict):
            continue
        else:
            break
    return tuple(path)


def _message(error: Any, path: KeyPath, data: dict[str, Any], model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = sorted(_allowed_keys(model, path[:-1], data))
        key = str(path[-1]) if path else "?"
        hint = difflib.get_close_matches(key, allowed, n=1)
        text = f"unknown key {key!r}"
        if hint:
            text += f" (did you mean {hint[0]!r}?)"
        if allowed:
            text += f"; expected one of: {', '.join(allowed)}"
        return text
    if kind == "missing":
        return "required key is missing"
    value = error.get("input")
    if kind == "unknown_backend" and isinstance(value, dict):
        value = value.get("backend")
    given = _shown(value, path, model, data)
    text = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{_lower_first(text)}; got {given}"


def _shown(value: Any, path: KeyPath, model: type[BaseModel], data: dict[str, Any]) -> str:
    if isinstance(value, SecretStr | SecretBytes) or _is_secret(path, model, data):
        return MASK
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_secret(path: KeyPath, model: type[BaseModel], data: dict[str, Any]) -> bool:
    if any(isinstance(p, str) and _SECRET_NAME.search(p) for p in path):
        return True
    annotation = _annotation_at(model, path, data)
    return annotation is not None and _mentions(annotation, (SecretStr, SecretBytes))


def _allowed_keys(model: type[BaseModel], path: KeyPath, data: dict[str, Any]) -> set[str]:
    annotation: Any = model if not path else _annotation_at(model, path, data)
    keys: set[str] = set()
    for candidate in _models_in(annotation, _value_at(data, path)):
        keys.update(candidate.model_fields)
    return keys


def _annotation_at(model: type[BaseModel], path: KeyPath, data: dict[str, Any]) -> Any:
    annotation: Any = model
    for depth, part in enumerate(path):
        value = _value_at(data, path[:depth])
        nxt: Any = None
        for candidate in _models_in(annotation, value):
            field = candidate.model_fields.get(str(part))
            if field is not None:
                nxt = field.annotation
                break
        if nxt is None:
            container = _unwrap(annotation)
            if get_origin(container) in (dict, list):
                args = get_args(container)
                nxt = args[-1] if args else None
        if nxt is None:
            return None
        annotation = nxt
    return annotation


def _models_in(annotation: Any, value: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    backend = value.get("backend") if isinstance(value, dict) else None
    for candidate in _flatten(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            field = candidate.model_fields.get("backend")
            if (
                backend is not None
                and field is not None
                and backend not in get_args(field.annotation)
            ):
                continue
            found.append(candidate)
    return found


def _flatten(annotation: Any) -> list[Any]:
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        out: list[Any] = []
        for arg in get_args(annotation):
            out.extend(_flatten(arg))
        return out
    return [annotation]


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _mentions(annotation: Any, targets: tuple[type, ...]) -> bool:
    return any(isinstance(a, type) and issubclass(a, targets) for a in _flatten(annotation))


def _value_at(data: Any, path: KeyPath) -> Any:
    node = data
    for part in path:
        if _has(node, part):
            node = node[part]
        else:
            return None
    return node


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else text
