"""Per-request context: request id, trace ids, and the container's request scope."""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from dtpyfw.core.context import (
    correlation_id,
    new_request_id,
    parse_traceparent,
    request_id,
    span_id,
    trace_id,
)

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from dtpyfw.container import ServiceContainerInstance

REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_log = logging.getLogger("dtpyfw.api")


class ErrorResponse(Exception):
    """Thrown into scoped generators when the response is an error (status >= 400)."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"the response was an error ({status}): roll back")


class RequestContextMiddleware:
    """Pure ASGI middleware: binds ids and runs each request inside ``container.ascope()``.

    An incoming ``X-Request-ID`` is kept when it is short and plain (so it cannot
    inject into logs); otherwise a fresh one is generated; either way it is echoed.
    ``traceparent`` continues the caller's trace with a new span.

    The request scope closes *before* a complete response goes out: scoped
    resources commit when the status is below 400 and roll back otherwise, and a
    failure while closing (say, a commit that violates a constraint) replaces the
    response with a problem document instead of a success the client would trust.
    Streaming responses cannot wait; their scope closes when the stream ends.
    """

    def __init__(self, app: ASGIApp, container: ServiceContainerInstance) -> None:
        self.app = app
        self.container = container

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        rid = headers.get(REQUEST_ID_HEADER, "")
        if not _SAFE_ID.match(rid):
            rid = new_request_id()
        parent = parse_traceparent(headers.get("traceparent"))
        tokens = [
            (request_id, request_id.set(rid)),
            (correlation_id, correlation_id.set(_safe(headers.get("x-correlation-id")) or rid)),
            (trace_id, trace_id.set(parent[0] if parent else secrets.token_hex(16))),
            (span_id, span_id.set(secrets.token_hex(8))),
        ]
        exchange = _Exchange(self.container.ascope(), scope, receive, send, rid)
        try:
            await exchange.open()
            try:
                await self.app(scope, receive, exchange.send)
            except Exception as exc:
                await exchange.close(exc)
                if exchange.started:
                    raise
                # Answered here, inside the request context, so the problem document
                # and its headers carry the request id; the cause is logged, not sent.
                await exchange.send_problem(exc)
                return
            except BaseException as exc:
                await exchange.close(exc)
                raise
            await exchange.close(None)
        finally:
            for var, token in reversed(tokens):
                var.reset(token)


class _Exchange:
    """One request's scope and the response messages it may hold back."""

    def __init__(
        self,
        scope_cm: contextlib.AbstractAsyncContextManager[Any],
        scope: Scope,
        receive: Receive,
        send: Send,
        rid: str,
    ) -> None:
        self._scope_cm = scope_cm
        self._asgi_scope = scope
        self._receive = receive
        self._send = send
        self._echo = (b"x-request-id", rid.encode("ascii"))
        self._start: Message | None = None
        self._status = 200
        self._closed = False
        self.started = False

    async def open(self) -> None:
        await self._scope_cm.__aenter__()

    async def close(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        if exc is None and self._status >= 400:
            exc = ErrorResponse(self._status)
        if exc is None:
            await self._scope_cm.__aexit__(None, None, None)
        else:
            await self._scope_cm.__aexit__(type(exc), exc, exc.__traceback__)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            message["headers"] = [*message.get("headers", []), self._echo]
            self._status = int(message["status"])
            if not self._closed:
                self._start = message  # held until the scope has closed cleanly
                return
            self.started = True
        elif kind == "http.response.body" and self._start is not None:
            if not message.get("more_body", False):
                try:
                    await self.close(None)
                except Exception as exc:
                    self._start = None
                    await self._replace_with_problem(exc)
                    return
            await self._flush_start()
        await self._send(message)

    async def _flush_start(self) -> None:
        start, self._start = self._start, None
        if start is not None:
            self.started = True
            await self._send(start)

    async def send_problem(self, exc: Exception) -> None:
        """Answer with the problem document for ``exc`` (nothing was sent yet)."""
        self._start = None
        await self._replace_with_problem(exc)

    async def _replace_with_problem(self, exc: Exception) -> None:
        from dtpyfw.api._problems import problem_for

        response = problem_for(exc)
        response.headers.append("x-request-id", self._echo[1].decode("ascii"))
        self.started = True
        await response(self._asgi_scope, self._receive, self._send)


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        out[key.decode("latin-1").lower()] = value.decode("latin-1")
    return out


def _safe(value: Any) -> str | None:
    return value if isinstance(value, str) and _SAFE_ID.match(value) else None


class ServerTimingMiddleware:
    """Pure ASGI middleware adding ``Server-Timing: app;dur=<ms>`` to every HTTP response.

    The duration runs from the request's arrival here to the start of the
    response (headers cannot wait for a streamed body). Installed outermost by
    ``create_app``, so it covers every other middleware, the request scope's
    commit included.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = (time.perf_counter() - started) * 1000
                headers = [
                    *message.get("headers", []),
                    (b"server-timing", b"app;dur=%.2f" % elapsed),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)
