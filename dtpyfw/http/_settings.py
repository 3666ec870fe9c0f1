"""Settings for outgoing HTTP: timeouts, retries and one entry per downstream service."""

from __future__ import annotations

__all__ = ["DownstreamSettings", "HttpSettings"]

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr

from dtpyfw.core.retry import RetryPolicy

_Status = Annotated[int, Field(ge=100, le=599)]


class DownstreamSettings(BaseModel):
    """One service this application calls, reached through ``HttpClients.get(name)``."""

    model_config = ConfigDict(extra="forbid")

    base_url: HttpUrl = Field(
        description="http:// or https:// URL every relative request path is joined to",
    )
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="overrides HttpSettings.timeout for this downstream, seconds",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="headers sent on every request (API keys); values never appear in reprs",
    )
    verify: bool = Field(default=True, description="verify the server's TLS certificate")
    retry: RetryPolicy | None = Field(
        default=None,
        description="overrides HttpSettings.retry for this downstream",
    )


class HttpSettings(BaseModel):
    """Timeouts, retries and context propagation shared by every outgoing HTTP client."""

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(
        default=10.0,
        gt=0,
        description="seconds allowed for each read, write and pool wait of one attempt",
    )
    connect_timeout: float = Field(
        default=5.0,
        gt=0,
        description="seconds allowed to open a connection, per attempt",
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="attempts and backoff for idempotent requests (GET, HEAD, OPTIONS, PUT, "
        "DELETE, TRACE); POST and PATCH are sent once",
    )
    retry_statuses: list[_Status] = Field(
        default_factory=lambda: [502, 503, 504],
        description="response statuses that make an idempotent request try again",
    )
    propagate_headers: bool = Field(
        default=True,
        description="send X-Request-ID, X-Correlation-ID and traceparent from the request "
        "context unless the caller set them",
    )
    downstreams: dict[str, DownstreamSettings] = Field(
        default_factory=dict,
        description="named services, each with its own base URL, headers and overrides",
    )
