"""One pooled httpx client per downstream service, built from :class:`HttpSettings`.

:class:`HttpClients` hands out ``httpx.Client`` objects and
:class:`AsyncHttpClients` hands out ``httpx.AsyncClient`` objects; both build
them the same way (see :class:`_ClientsBase`) and wrap every transport in
:class:`~dtpyfw.http.RetryTransport` / :class:`~dtpyfw.http.AsyncRetryTransport`.

A name missing from ``HttpSettings.downstreams`` raises
:class:`~dtpyfw.core.errors.NotConfigured`, listing the known names: it is a
configuration mistake, not a failed downstream call, so it is not an
:class:`~dtpyfw.core.errors.HttpError`.
"""

from __future__ import annotations

__all__ = ["AsyncHttpClients", "HttpClients"]

import threading
import warnings
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

import httpx

from dtpyfw.core.errors import ContainerError, NotConfigured
from dtpyfw.core.retry import RetryPolicy
from dtpyfw.http._settings import DownstreamSettings, HttpSettings
from dtpyfw.http._transport import AsyncRetryTransport, RetryTransport

_ClientT = TypeVar("_ClientT", httpx.Client, httpx.AsyncClient)


@dataclass(frozen=True, slots=True)
class _ClientOptions:
    """Everything needed to build one client, resolved from the settings."""

    base_url: str
    timeout: httpx.Timeout
    headers: dict[str, str]
    verify: bool
    retry: RetryPolicy
    retry_statuses: tuple[int, ...]
    propagate_headers: bool


class _ClientsBase(Generic[_ClientT]):
    """The cache, lookup and settings resolution shared by both twins."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._clients: dict[str, _ClientT] = {}
        self._default: _ClientT | None = None
        self._closed = False
        self._lock = threading.Lock()

    def get(self, name: str) -> _ClientT:
        """The client for downstream ``name``, created on first use and then reused."""
        with self._lock:
            self._check_open()
            client = self._clients.get(name)
            if client is None:
                client = self._build(self._options(self._downstream(name)))
                self._clients[name] = client
            return client

    @property
    def default(self) -> _ClientT:
        """A client with no base URL for absolute URLs, using the global timeout and retry."""
        with self._lock:
            self._check_open()
            if self._default is None:
                self._default = self._build(self._options(None))
            return self._default

    @property
    def closed(self) -> bool:
        """True once ``close()`` / ``aclose()`` ran."""
        return self._closed

    def _build(self, options: _ClientOptions) -> _ClientT:
        raise NotImplementedError

    def _take_all(self) -> list[_ClientT]:
        """Mark closed and hand back every client, newest first, for closing."""
        with self._lock:
            self._closed = True
            clients = list(reversed(self._clients.values()))
            if self._default is not None:
                clients.append(self._default)
            self._clients.clear()
            self._default = None
        return clients

    def _check_open(self) -> None:
        if self._closed:
            raise ContainerError(
                f"{type(self).__name__} is closed; resolve it from the container again"
            )

    def _downstream(self, name: str) -> DownstreamSettings:
        try:
            return self.settings.downstreams[name]
        except KeyError:
            known = ", ".join(sorted(self.settings.downstreams)) or "none"
            raise NotConfigured(
                f"no downstream named {name!r} in HttpSettings.downstreams (known: {known})"
            ) from None

    def _options(self, downstream: DownstreamSettings | None) -> _ClientOptions:
        settings = self.settings
        if downstream is None:
            return _ClientOptions(
                base_url="",
                timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
                headers={},
                verify=True,
                retry=settings.retry,
                retry_statuses=tuple(settings.retry_statuses),
                propagate_headers=settings.propagate_headers,
            )
        timeout = downstream.timeout if downstream.timeout is not None else settings.timeout
        return _ClientOptions(
            base_url=str(downstream.base_url),
            timeout=httpx.Timeout(timeout, connect=settings.connect_timeout),
            headers={key: value.get_secret_value() for key, value in downstream.headers.items()},
            verify=downstream.verify,
            retry=downstream.retry or settings.retry,
            retry_statuses=tuple(settings.retry_statuses),
            propagate_headers=settings.propagate_headers,
        )

    def __del__(self) -> None:
        # getattr: __init__ may not have finished when the object is collected.
        if getattr(self, "_closed", True):
            return
        if self._clients or self._default is not None:
            warnings.warn(
                f"{type(self).__name__} was never closed; use it as a context manager "
                "or resolve it from the container Resource",
                ResourceWarning,
                stacklevel=1,
            )


class HttpClients(_ClientsBase[httpx.Client]):
    """Sync ``httpx.Client`` objects, one per downstream, closed together by :meth:`close`."""

    def close(self) -> None:
        """Close every client, newest first; closing twice is harmless."""
        for client in self._take_all():
            client.close()

    def __enter__(self) -> HttpClients:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _build(self, options: _ClientOptions) -> httpx.Client:
        transport = RetryTransport(
            httpx.HTTPTransport(verify=options.verify),
            retry=options.retry,
            retry_statuses=options.retry_statuses,
            propagate_headers=options.propagate_headers,
        )
        return httpx.Client(
            base_url=options.base_url,
            timeout=options.timeout,
            headers=options.headers,
            transport=transport,
        )


class AsyncHttpClients(_ClientsBase[httpx.AsyncClient]):
    """Async twin of :class:`HttpClients`, handing out ``httpx.AsyncClient`` objects."""

    async def aclose(self) -> None:
        """Close every client, newest first; closing twice is harmless."""
        for client in self._take_all():
            await client.aclose()

    async def __aenter__(self) -> AsyncHttpClients:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _build(self, options: _ClientOptions) -> httpx.AsyncClient:
        transport = AsyncRetryTransport(
            httpx.AsyncHTTPTransport(verify=options.verify),
            retry=options.retry,
            retry_statuses=options.retry_statuses,
            propagate_headers=options.propagate_headers,
        )
        return httpx.AsyncClient(
            base_url=options.base_url,
            timeout=options.timeout,
            headers=options.headers,
            transport=transport,
        )
