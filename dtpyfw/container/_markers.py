"""Wiring markers that explain themselves when their module was never wired."""

from __future__ import annotations

__all__ = ["Closing", "Provide", "Provider", "inject"]

import sys
from typing import Any, NoReturn

from dependency_injector import wiring
from dependency_injector.wiring import Closing, inject

from dtpyfw.core.errors import WiringError


class Provide(wiring.Provide):  # type: ignore[misc,valid-type]
    """``Provide[Container.x]`` as in dependency-injector, with a clear unwired error.

    When a function's module was never wired, dependency-injector leaves the marker
    itself as the argument's value; using it then fails with ``'Provide' object has
    no attribute ...``. This marker raises :class:`WiringError` naming the module to
    wire instead. Truth tests stay plain: dependency-injector itself makes them.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        _unwired(self, f"attribute {name!r}", sys._getframe(1))

    def __enter__(self) -> NoReturn:
        _unwired(self, "`with`", sys._getframe(1))

    def __exit__(self, *exc: object) -> None:
        return None

    async def __aenter__(self) -> NoReturn:
        _unwired(self, "`async with`", sys._getframe(1))

    async def __aexit__(self, *exc: object) -> None:
        return None


class Provider(wiring.Provider):  # type: ignore[misc,valid-type]
    """``Provider[Container.x]``: inject the provider itself rather than its value."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        _unwired(self, f"attribute {name!r}", sys._getframe(1))


def _unwired(marker: Any, what: str, frame: Any) -> NoReturn:
    module = frame.f_globals.get("__name__", "?")
    function = frame.f_code.co_qualname if hasattr(frame.f_code, "co_qualname") else "?"
    target = getattr(marker, "provider", marker)
    raise WiringError(
        f"{module}.{function} used {what} of {type(marker).__name__}[{target!r}], "
        f"but module {module!r} is not wired, so nothing was injected. "
        f"Wire it at start: container.wire(modules=[{module!r}]) "
        f"or container.wire(packages=[{module.split('.')[0]!r}])."
    )
