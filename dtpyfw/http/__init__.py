"""Outgoing HTTP: pooled clients per downstream, retries for idempotent calls, context headers.

Build :class:`HttpSettings`, then either use :class:`HttpClients` /
:class:`AsyncHttpClients` as context managers or resolve them from
:class:`HttpContainer` (``clients`` / ``async_clients`` Resources).
"""

from dtpyfw.http._clients import AsyncHttpClients, HttpClients
from dtpyfw.http._container import HttpContainer
from dtpyfw.http._settings import DownstreamSettings, HttpSettings
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
