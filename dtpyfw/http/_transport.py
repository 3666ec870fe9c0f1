"""Transports that retry idempotent requests and carry the request context downstream.

:class:`RetryTransport` and :class:`AsyncRetryTransport` wrap another httpx
transport. For every request they:

1. add ``X-Request-ID``, ``X-Correlation-ID`` and ``traceparent`` from
   :mod:`dtpyfw.core.context` when those are bound and the caller did not set
   the header (``propagate_headers=False`` turns this off);
2. retry idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) on
   connection errors, timeouts and ``retry_statuses``, sleeping the
   :class:`~dtpyfw.core.retry.RetryPolicy` backoff in between. POST and PATCH,
   and requests whose streamed body cannot be sent twice, get one attempt;
3. raise :class:`~dtpyfw.core.errors.HttpError`, chained to the httpx
   exception, when the last attempt fails at the transport level;
4. return the last response as-is when every attempt answered with a retry
   status: a 503 is still an answer, and the caller decides with
   ``response.raise_for_status()``.

Each retry is logged at WARNING to ``dtpyfw.http`` with ``extra`` fields
``method``, ``url`` (without credentials or query string), ``attempt`` (the
1-based attempt that failed) and ``reason``. Header values are never logged.
"""

from __future__ import annotations

__all__ = ["AsyncRetryTransport", "RetryTransport"]

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from types import TracebackType

import httpx

from dtpyfw.core.context import current_context
from dtpyfw.core.errors import HttpError
from dtpyfw.core.retry import RetryPolicy

logger = logging.getLogger("dtpyfw.http")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
DEFAULT_RETRY_STATUSES = (502, 503, 504)

# Failures after which the server cannot have acted on an idempotent request
# more than once per attempt; protocol misuse and proxy errors are not retried.
_RETRYABLE_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


class RetryTransport(httpx.BaseTransport):
    """Wrap ``inner`` with retries for idempotent requests and context propagation."""

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        retry: RetryPolicy | None = None,
        retry_statuses: Iterable[int] = DEFAULT_RETRY_STATUSES,
        propagate_headers: bool = True,
    ) -> None:
        self._inner = inner if inner is not None else httpx.HTTPTransport()
        self._rules = _RetryRules(retry or RetryPolicy(), retry_statuses, propagate_headers)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the inner transport, retrying where it is safe."""
        attempts = self._rules.prepare(request)
        attempt = 1
        while True:
            try:
                response = self._inner.handle_request(request)
            except httpx.TransportError as exc:
                delay = self._rules.retry_after_error(request, exc, attempt, attempts)
                if delay is None:
                    raise self._rules.failure(request, exc, attempt) from exc
            else:
                delay = self._rules.retry_after_response(request, response, attempt, attempts)
                if delay is None:
                    return response
                response.close()
            if delay > 0:
                time.sleep(delay)
            attempt += 1

    def close(self) -> None:
        """Close the inner transport and its connection pool."""
        self._inner.close()

    def __enter__(self) -> RetryTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()


class AsyncRetryTransport(httpx.AsyncBaseTransport):
    """Async twin of :class:`RetryTransport`; sleeps with ``asyncio.sleep``."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        retry: RetryPolicy | None = None,
        retry_statuses: Iterable[int] = DEFAULT_RETRY_STATUSES,
        propagate_headers: bool = True,
    ) -> None:
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._rules = _RetryRules(retry or RetryPolicy(), retry_statuses, propagate_headers)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the inner transport, retrying where it is safe."""
        attempts = self._rules.prepare(request)
        attempt = 1
        while True:
            try:
                response = await self._inner.handle_async_request(request)
            except httpx.TransportError as exc:
                delay = self._rules.retry_after_error(request, exc, attempt, attempts)
                if delay is None:
                    raise self._rules.failure(request, exc, attempt) from exc
            else:
                delay = self._rules.retry_after_response(request, response, attempt, attempts)
                if delay is None:
                    return response
                await response.aclose()
            if delay > 0:
                await asyncio.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        """Close the inner transport and its connection pool."""
        await self._inner.aclose()

    async def __aenter__(self) -> AsyncRetryTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


class _RetryRules:
    """Every decision both transports make; they only differ in how they wait and close."""

    def __init__(
        self, retry: RetryPolicy, retry_statuses: Iterable[int], propagate_headers: bool
    ) -> None:
        self.retry = retry
        self.retry_statuses = frozenset(retry_statuses)
        self.propagate_headers = propagate_headers

    def prepare(self, request: httpx.Request) -> int:
        """Add the context headers and return how many attempts ``request`` may use."""
        if self.propagate_headers:
            _propagate_context(request)
        if request.method not in IDEMPOTENT_METHODS:
            return 1
        # A generator body is consumed by the first attempt; resending it would
        # send an empty or truncated body, so such a request gets one attempt.
        if not isinstance(request.stream, httpx.ByteStream):
            return 1
        return self.retry.attempts

    def retry_after_response(
        self, request: httpx.Request, response: httpx.Response, attempt: int, attempts: int
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to return ``response``."""
        if attempt >= attempts or response.status_code not in self.retry_statuses:
            return None
        return self._next(request, attempt, reason=str(response.status_code))

    def retry_after_error(
        self, request: httpx.Request, exc: httpx.TransportError, attempt: int, attempts: int
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up on ``exc``."""
        if attempt >= attempts:
            return None
        if not isinstance(exc, _RETRYABLE_ERRORS) or not isinstance(exc, self.retry.retry_on):
            return None
        return self._next(request, attempt, reason=type(exc).__name__)

    def failure(self, request: httpx.Request, exc: httpx.TransportError, attempt: int) -> HttpError:
        """The error raised when the last attempt failed at the transport level."""
        tries = f"{attempt} attempt{'s' if attempt != 1 else ''}"
        return HttpError(
            f"{request.method} {_safe_url(request)} failed after {tries}: "
            f"{type(exc).__name__}: {exc}"
        )

    def _next(self, request: httpx.Request, attempt: int, *, reason: str) -> float:
        url = _safe_url(request)
        logger.warning(
            "retrying %s %s after attempt %d failed (%s)",
            request.method,
            url,
            attempt,
            reason,
            extra={"method": request.method, "url": url, "attempt": attempt, "reason": reason},
        )
        delay = self.retry.delay_for(attempt)
        if self.retry.jitter:
            delay += random.uniform(0, self.retry.jitter)  # noqa: S311 - backoff jitter, not a secret
        return delay


def _propagate_context(request: httpx.Request) -> None:
    context = current_context()
    for name, value in (
        ("X-Request-ID", context.request_id),
        ("X-Correlation-ID", context.correlation_id),
        ("traceparent", context.traceparent()),
    ):
        if value and name not in request.headers:
            request.headers[name] = value


def _safe_url(request: httpx.Request) -> str:
    """The URL without userinfo, query or fragment: those may carry secrets."""
    return str(request.url.copy_with(userinfo=b"", query=None, fragment=None))
