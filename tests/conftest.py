"""Markers follow the folder a test lives in, so nobody has to remember them."""

from __future__ import annotations

import pytest

_MARKERS = {
    "unit": pytest.mark.unit,
    "integration": pytest.mark.integration,
    "reliability": pytest.mark.reliability,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test unit / integration / reliability from its folder."""
    for item in items:
        parts = item.path.parts
        for folder, marker in _MARKERS.items():
            if folder in parts:
                item.add_marker(marker)


# pytester runs the backend fixtures in inner sessions (tests/integration/test_launchers.py).
pytest_plugins = ["pytester"]
