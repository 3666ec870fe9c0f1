"""``ApiSettings``: CORS, compression, Server-Timing and rate limiting for ``create_app``.

Not a section of the root ``Settings``: pass ``create_app(container, api=ApiSettings(...))``,
or add ``api: ApiSettings = ApiSettings()`` to your service's ``Settings``
subclass and ``create_app`` picks it up (then ``DTPYFW_API__CORS__ALLOW_ORIGINS``
and the YAML file configure it like any other section).
"""

from __future__ import annotations

__all__ = ["ApiSettings", "CorsSettings", "RateLimitSettings"]

import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

_ORIGIN = re.compile(
    r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?$"
)


class CorsSettings(BaseModel):
    """Cross-origin requests. Off (same origin only) until ``allow_origins`` lists some."""

    model_config = ConfigDict(extra="forbid")

    allow_origins: list[str] = Field(
        default_factory=list,
        description="origins allowed to call the API (scheme://host[:port]); '*' means any, "
        "and is refused together with allow_credentials",
    )
    allow_credentials: bool = Field(
        default=False, description="let browsers send cookies and Authorization cross-origin"
    )
    allow_methods: list[str] = Field(
        default_factory=lambda: ["GET", "POST", "PUT", "PATCH", "DELETE"],
        description="methods allowed cross-origin",
    )
    allow_headers: list[str] = Field(
        default_factory=lambda: ["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
        description="request headers allowed cross-origin",
    )
    expose_headers: list[str] = Field(
        default_factory=lambda: ["X-Request-ID", "Server-Timing", "Retry-After"],
        description="response headers scripts may read",
    )
    max_age: int = Field(default=600, ge=0, description="seconds browsers cache a preflight")

    @model_validator(mode="after")
    def _safe(self) -> Self:
        wildcard = "*" in self.allow_origins
        if wildcard and len(self.allow_origins) > 1:
            raise ValueError("allow_origins: '*' cannot be combined with listed origins")
        if self.allow_credentials and (
            wildcard or "*" in self.allow_methods or "*" in self.allow_headers
        ):
            raise ValueError(
                "allow_credentials cannot be combined with '*': list the origins, methods and "
                "headers that may send credentials"
            )
        bad = [o for o in self.allow_origins if o != "*" and not _ORIGIN.match(o)]
        if bad:
            raise ValueError(
                f"allow_origins must be scheme://host[:port] with no path or trailing slash: "
                f"{', '.join(bad)}"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Whether any origin is allowed (otherwise no CORS middleware is installed)."""
        return bool(self.allow_origins)


class RateLimitSettings(BaseModel):
    """Where request counters live, and an optional limit on every request of the app."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="memory (per process) or redis (shared by every instance; needs the "
        "`redis:` section)",
    )
    algorithm: Literal["sliding", "fixed"] = Field(
        default="sliding",
        description="sliding window (weighted previous window, smooth) or fixed window",
    )
    limit: int | None = Field(
        default=None,
        ge=1,
        description="requests per window per client on every route; null: only the limits "
        "routes declare with rate_limit()",
    )
    window: float = Field(default=60.0, gt=0, description="window length in seconds")
    prefix: str = Field(
        default="dtpyfw:ratelimit:", description="prefix of every Redis key the limiter writes"
    )
    exempt_paths: list[str] = Field(
        default_factory=lambda: ["/livez", "/readyz"],
        description="paths the app-wide limit never counts (health probes)",
    )


class ApiSettings(BaseModel):
    """What ``create_app`` installs around the routes."""

    model_config = ConfigDict(extra="forbid")

    cors: CorsSettings = Field(default_factory=CorsSettings, description="cross-origin requests")
    gzip_minimum_size: int | None = Field(
        default=1000,
        ge=0,
        description="gzip responses of at least this many bytes when the client accepts it; "
        "null turns compression off",
    )
    server_timing: bool = Field(
        default=True,
        description="add `Server-Timing: app;dur=<ms>` (time until the response starts)",
    )
    rate_limit: RateLimitSettings = Field(
        default_factory=RateLimitSettings, description="request rate limiting"
    )
