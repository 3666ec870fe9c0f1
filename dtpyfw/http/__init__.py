"""Outgoing HTTP: pooled clients per downstream, retries for idempotent calls, context headers.

Build :class:`HttpSettings`, then either use :class:`HttpClients` /
:class:`AsyncHttpClients` as context managers or resolve them from
:class:`HttpContainer` (``clients`` / ``async_clients`` Resources).
"""

import typing as _typing

from dtpyfw.http._container import HttpContainer
from dtpyfw.http._settings import DownstreamSettings, HttpSettings

if _typing.TYPE_CHECKING:
    from dtpyfw.http._clients import AsyncHttpClients, HttpClients
    from dtpyfw.http._transport import AsyncRetryTransport, RetryTransport

__all__ = [
    "AsyncHttpClients",
    "AsyncRetryTransport",
    "DownstreamSettings",
    "HttpClients",
    "HttpContainer",
    "HttpSettings",
    "RetryTransport",
]

# httpx costs ~35 ms to import; settings and the container must not pay it at start.
_LAZY = {
    "AsyncHttpClients": "dtpyfw.http._clients",
    "HttpClients": "dtpyfw.http._clients",
    "AsyncRetryTransport": "dtpyfw.http._transport",
    "RetryTransport": "dtpyfw.http._transport",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
