"""dtpyfw: provider modules for Python microservices, bound into a declarative container.

Importing :mod:`dtpyfw` is cheap and needs no optional extra; subsystems import
their third-party libraries when they are first used.
"""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # importlib.metadata costs ~25 ms: read the version only when someone asks.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dtpyfw")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0"
