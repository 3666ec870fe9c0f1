"""RFC 9457 problem details for every error the app returns."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dtpyfw.core.context import request_id
from dtpyfw.core.errors import DtpyfwError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

_log = logging.getLogger("dtpyfw.api")
PROBLEM_JSON = "application/problem+json"


def problem(
    status: int, title: str, *, slug: str, detail: str | None = None, **extra: Any
) -> JSONResponse:
    """A problem+json response carrying the request id."""
    from fastapi.responses import JSONResponse

    body: dict[str, Any] = {"type": f"urn:dtpyfw:problem:{slug}", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    rid = request_id.get()
    if rid:
        body["request_id"] = rid
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def problem_for(exc: Exception) -> JSONResponse:
    """The problem response for ``exc``; server-side failures are logged, not shown.

    Headers an error carries in ``http_headers`` (``WWW-Authenticate``,
    ``Retry-After``) go out with it; a 401 always has a ``WWW-Authenticate``
    challenge (RFC 9110 11.6.1), ``Bearer`` when the error named none.
    """
    if isinstance(exc, DtpyfwError):
        status = exc.http_status
        if status >= 500:
            _log.error("request failed: %s", type(exc).__name__, exc_info=exc)
            return problem(status, _title(status), slug=exc.problem_type)
        response = problem(status, _title(status), slug=exc.problem_type, detail=str(exc))
        headers = getattr(exc, "http_headers", None)
        if isinstance(headers, dict):
            response.headers.update(headers)
        if status == 401 and "www-authenticate" not in response.headers:
            response.headers["WWW-Authenticate"] = _bearer_challenge(exc)
        return response
    _log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return problem(500, "Internal Server Error", slug="internal-error")


def install_problem_handlers(app: FastAPI) -> None:
    """Map dtpyfw errors, validation errors, HTTP errors and crashes to problem details."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def on_dtpyfw_error(request: Request, exc: Exception) -> JSONResponse:
        return problem_for(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # Only where and why: echoing the input could leak a password field.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return problem(
            422,
            "Unprocessable Content",
            slug="validation-error",
            detail="the request is not valid",
            errors=errors,
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        response = problem(
            exc.status_code,
            _title(exc.status_code),
            slug=f"http-{exc.status_code}",
            detail=exc.detail if isinstance(exc.detail, str) else None,
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        return problem_for(exc)

    app.add_exception_handler(DtpyfwError, on_dtpyfw_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_crash)


def _bearer_challenge(exc: DtpyfwError) -> str:
    error = getattr(exc, "oauth_error", None)
    return f'Bearer error="{error}"' if isinstance(error, str) else "Bearer"


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
