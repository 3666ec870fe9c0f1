"""dtpyfw: provider modules for Python microservices, bound into a declarative container.

Importing :mod:`dtpyfw` is cheap and needs no optional extra; subsystems import
their third-party libraries when they are first used.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dtpyfw")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
