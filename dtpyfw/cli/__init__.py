"""The ``dtpyfw`` command-line tool."""

from dtpyfw.cli._main import main

__all__ = ["main"]
