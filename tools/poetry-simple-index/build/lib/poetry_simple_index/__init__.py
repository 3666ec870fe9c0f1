"""Let Poetry's PyPI source work against registries that serve only the simple index.

Poetry reads release metadata from PyPI's JSON API. Some mirrors serve only the
simple index (PEP 503/691), where that API answers 404 and locking fails with
"Package X not found". This plugin keeps the JSON API as the first choice and,
only when it has nothing, reads the same release from the simple index exactly
as Poetry does for any other (legacy) source. Against a registry that has the
JSON API it changes nothing.
"""

from __future__ import annotations

from typing import Any

from poetry.plugins.plugin import Plugin
from poetry.repositories.exceptions import PackageNotFoundError
from poetry.repositories.legacy_repository import LegacyRepository
from poetry.repositories.pypi_repository import PyPiRepository

_json_release_info = PyPiRepository._get_release_info
_json_links = PyPiRepository.find_links_for_package


def _release_info(self: PyPiRepository, name: Any, version: Any) -> dict[str, Any]:
    try:
        return _json_release_info(self, name, version)
    except PackageNotFoundError:
        return LegacyRepository._get_release_info(self, name, version)  # type: ignore[arg-type]


def _links(self: PyPiRepository, package: Any) -> list[Any]:
    links = _json_links(self, package)
    if links:
        return links
    page = self.get_page(package.name)
    return list(page.links_for_version(package.name, package.version))


PyPiRepository._get_release_info = _release_info  # type: ignore[method-assign]
PyPiRepository.find_links_for_package = _links  # type: ignore[method-assign]


class SimpleIndexFallback(Plugin):
    """Importing the module installs the fallback; activation has nothing left to do."""

    def activate(self, poetry: Any, io: Any) -> None:
        return None
