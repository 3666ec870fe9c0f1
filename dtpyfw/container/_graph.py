"""Index the providers of a container by dotted path; render the graph."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from dependency_injector import containers, providers


class ProviderIndex:
    """Paths of every provider, which subsystems are absent, and dependency order."""

    def __init__(self, container: containers.Container, absent: frozenset[str]) -> None:
        self._absent = absent
        self._paths: dict[int, str] = {}
        self._providers: list[tuple[providers.Provider[Any], str, str | None]] = []
        self._subsystems: list[str] = []
        for name, provider in container.providers.items():
            if isinstance(provider, providers.Container):
                self._subsystems.append(name)
                for inner_name, inner in provider.container.providers.items():
                    self._add(inner, f"{name}.{inner_name}", name)
            else:
                self._add(provider, name, None)

    def _add(self, provider: providers.Provider[Any], path: str, subsystem: str | None) -> None:
        self._paths.setdefault(id(provider), path)
        self._providers.append((provider, path, subsystem))

    def path(self, provider: providers.Provider[Any]) -> str:
        """The dotted path of ``provider``, or a description when it has none."""
        return self._paths.get(id(provider)) or _describe(provider)

    def present(self) -> Iterator[tuple[providers.Provider[Any], str]]:
        """Providers of the container itself and of configured subsystems."""
        for provider, path, subsystem in self._providers:
            if subsystem is None or subsystem not in self._absent:
                yield provider, path

    def absent_owner(self, provider: providers.Provider[Any]) -> str | None:
        """The unconfigured subsystem that ``provider`` belongs to, if any."""
        for candidate, _path, subsystem in self._providers:
            if candidate is provider:
                return subsystem if subsystem in self._absent else None
        return None

    def subsystem_names(self) -> list[str]:
        """Every subsystem container, configured or not."""
        return list(self._subsystems)

    def present_subsystems(self) -> list[str]:
        """Subsystem containers the settings configure."""
        return [name for name in self._subsystems if name not in self._absent]

    def ordered(self, kind: type[Any]) -> list[Any]:
        """Providers of ``kind`` reachable from present ones, dependencies first.

        Anonymous providers nested inside others (``Resource(f, Resource(g))``)
        count too: they are initialised and closed like named ones.
        """
        done: set[int] = set()
        out: list[Any] = []

        def visit(node: providers.Provider[Any], seen: set[int]) -> None:
            if id(node) in done or id(node) in seen:
                return
            seen.add(id(node))
            for dep in node.related:
                if providers.is_provider(dep):
                    visit(dep, seen)
            done.add(id(node))
            if isinstance(node, kind):
                out.append(node)

        for provider, _path in self.present():
            visit(provider, set())
        return out

    def edges(self) -> Iterator[tuple[str, str]]:
        """``(dependent, dependency)`` pairs between named providers."""
        for provider, path in self.present():
            for dep in _named_deps(provider, self._paths, set()):
                yield path, self._paths[id(dep)]


def render_graph(index: ProviderIndex, fmt: Literal["text", "mermaid"]) -> str:
    """An indented tree of providers with their dependencies, or a Mermaid flowchart."""
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        for provider, path in index.present():
            lines.append(f'    {_node_id(path)}["{path}<br/><i>{type(provider).__name__}</i>"]')
        lines.extend(f"    {_node_id(a)} --> {_node_id(b)}" for a, b in index.edges())
        return "\n".join(lines)
    deps: dict[str, list[str]] = {}
    for a, b in index.edges():
        deps.setdefault(a, []).append(b)
    lines = []
    for provider, path in index.present():
        lines.append(f"{path} ({type(provider).__name__})")
        lines.extend(f"    -> {dep}" for dep in deps.get(path, []))
    absent = [n for n in index.subsystem_names() if n not in index.present_subsystems()]
    if absent:
        lines.append(f"# not configured: {', '.join(absent)}")
    return "\n".join(lines)


def _named_deps(
    provider: providers.Provider[Any], paths: dict[int, str], seen: set[int]
) -> Iterator[providers.Provider[Any]]:
    # Anonymous providers (settings.provided.db, inline Callables) are looked through
    # so the graph shows named provider -> named provider edges only.
    for dep in provider.related:
        if not providers.is_provider(dep) or id(dep) in seen:
            continue
        seen.add(id(dep))
        if id(dep) in paths:
            yield dep
        else:
            yield from _named_deps(dep, paths, seen)


def _node_id(path: str) -> str:
    return path.replace(".", "__")


def _describe(provider: providers.Provider[Any]) -> str:
    return f"<{type(provider).__name__}>"
