"""FastAPI integration: ``create_app``, auth dependencies, pagination, problem details.

Needs the ``api`` extra (``pip install 'dtpyfw[api]'``); importing this package
does not import FastAPI: the names that need it (the auth dependencies,
``CurrentUser``, ``list_query``, ``rate_limit``...) load on first access.
"""

import importlib as _importlib
import typing as _typing

from dtpyfw.api._app import create_app
from dtpyfw.api._middleware import RequestContextMiddleware, ServerTimingMiddleware
from dtpyfw.api._pagination import (
    RESERVED_PARAMS,
    CursorPage,
    CursorPageOut,
    ListQuery,
    OffsetPage,
    Page,
    list_query,
)
from dtpyfw.api._problems import PROBLEM_JSON, install_problem_handlers, problem, problem_for
from dtpyfw.api._ratelimit import (
    Decision,
    MemoryRateLimitStore,
    RateLimited,
    RateLimitStore,
    RedisRateLimitStore,
    client_key,
    rate_limit,
)
from dtpyfw.api._settings import ApiSettings, CorsSettings, RateLimitSettings

if _typing.TYPE_CHECKING:
    from dtpyfw.api._auth import (
        CurrentUser,
        HeaderAuthenticator,
        Principal,
        api_key_user,
        authenticate,
        bearer_user,
        challenge,
        jwks_router,
        require_permissions,
        require_roles,
        require_scopes,
    )

__all__ = [
    "ApiSettings",
    "CorsSettings",
    "CurrentUser",
    "CursorPage",
    "CursorPageOut",
    "Decision",
    "HeaderAuthenticator",
    "ListQuery",
    "MemoryRateLimitStore",
    "OffsetPage",
    "PROBLEM_JSON",
    "Page",
    "Principal",
    "RESERVED_PARAMS",
    "RateLimitSettings",
    "RateLimitStore",
    "RateLimited",
    "RedisRateLimitStore",
    "RequestContextMiddleware",
    "ServerTimingMiddleware",
    "api_key_user",
    "authenticate",
    "bearer_user",
    "challenge",
    "client_key",
    "create_app",
    "install_problem_handlers",
    "jwks_router",
    "list_query",
    "problem",
    "problem_for",
    "rate_limit",
    "require_permissions",
    "require_roles",
    "require_scopes",
]

# Built on FastAPI's Depends and security schemes at import, so loaded on first access.
_LAZY = frozenset(
    {
        "CurrentUser",
        "HeaderAuthenticator",
        "Principal",
        "api_key_user",
        "authenticate",
        "bearer_user",
        "challenge",
        "jwks_router",
        "require_permissions",
        "require_roles",
        "require_scopes",
    }
)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from dtpyfw.core._extras import require

        require("fastapi", "api")
        value = getattr(_importlib.import_module("dtpyfw.api._auth"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
