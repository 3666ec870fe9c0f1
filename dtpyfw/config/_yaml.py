"""Read a YAML settings file into plain data, remembering the line of every key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dtpyfw.core.errors import ConfigIssue

KeyPath = tuple[str | int, ...]


class YamlDocument:
    """The parsed tree of one file and the 1-based line where each key path starts."""

    def __init__(self, data: Any, lines: dict[KeyPath, int], source: str) -> None:
        self.data = data
        self.lines = lines
        self.source = source


def read_yaml_file(path: Path) -> YamlDocument:
    """Parse ``path``; every problem is a :class:`ConfigIssue` naming the file (and line)."""
    source = str(path)
    if not path.exists():
        raise _issue(source, "file not found")
    if path.is_dir():
        raise _issue(source, "is a directory; expected a YAML file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _issue(
            source, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})", line
        ) from exc
    return parse_yaml(text, source)


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse YAML text; an empty document or a non-mapping root is an error."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise _issue(
                source, "file is empty; expected a mapping of sections (service:, db:, ...)"
            )
        if not isinstance(node, yaml.MappingNode):
            raise _issue(
                source, f"expected a mapping at the top level, got {_kind(node)}", _line(node)
            )
        lines: dict[KeyPath, int] = {}
        data = _Walker(loader, lines, source).walk(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise _issue(source, f"malformed YAML: {problem}", mark.line + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise _issue(source, f"malformed YAML: {exc}") from exc
    finally:
        loader.dispose()
    return YamlDocument(data, lines, source)


class _Walker:
    def __init__(self, loader: yaml.SafeLoader, lines: dict[KeyPath, int], source: str) -> None:
        self.loader = loader
        self.lines = lines
        self.source = source

    def walk(self, node: yaml.Node, path: KeyPath) -> Any:
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves ``<<: *anchor`` merge keys
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    raise _issue(
                        self.source, f"{_dotted((*path, key))}: duplicate key", _line(key_node)
                    )
                self.lines[(*path, key)] = _line(key_node)
                out[key] = self.walk(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = _line(item)
                items.append(self.walk(item, (*path, index)))
            return items
        return self.loader.construct_object(node, deep=True)


def _issue(source: str, message: str, line: int | None = None) -> _YamlIssue:
    return _YamlIssue(ConfigIssue(path="", message=message, source=source, line=line))


class _YamlIssue(Exception):
    def __init__(self, issue: ConfigIssue) -> None:
        self.issue = issue
        super().__init__(str(issue))


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a scalar value"


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


YamlIssue = _YamlIssue
dotted = _dotted
