"""create_app's ApiSettings: Server-Timing, gzip, secure CORS, settings from a subclass."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import ValidationError

from dtpyfw.api import ApiSettings, CorsSettings, create_app
from dtpyfw.config import Settings
from dtpyfw.container import ServiceContainer, ServiceContainerInstance
from dtpyfw.testing import closing_container, embedded_settings

_TIMING = re.compile(r"^app;dur=\d+\.\d{2}$")


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/big")
    async def big() -> dict[str, str]:
        return {"text": "lorem ipsum " * 500}

    @router.get("/small")
    async def small() -> dict[str, bool]:
        return {"ok": True}

    return router


@pytest.fixture
def container(tmp_path: Path) -> Iterator[ServiceContainerInstance]:
    with closing_container(embedded_settings(tmp_path)) as built:
        yield built


def _client(container: ServiceContainerInstance, api: ApiSettings | None = None) -> TestClient:
    return TestClient(create_app(container, routers=[_router()], configure_logs=False, api=api))


def test_server_timing_on_every_response(container: ServiceContainerInstance) -> None:
    """Success, 404 and health responses carry Server-Timing: app;dur=<ms>."""
    with _client(container) as client:
        for path in ("/small", "/missing", "/livez"):
            timing = client.get(path).headers["server-timing"]
            assert _TIMING.match(timing), timing
    with _client(container, ApiSettings(server_timing=False)) as client:
        assert "server-timing" not in client.get("/small").headers


def test_gzip_for_large_responses_only(container: ServiceContainerInstance) -> None:
    """Large bodies are gzipped when accepted; small ones and refusing clients get identity."""
    with _client(container) as client:
        big = client.get("/big", headers={"Accept-Encoding": "gzip"})
        assert big.headers["content-encoding"] == "gzip"
        assert big.json()["text"].startswith("lorem ipsum")
        assert "content-encoding" not in client.get("/small").headers
        plain = client.get("/big", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
    with _client(container, ApiSettings(gzip_minimum_size=None)) as client:
        assert "content-encoding" not in client.get("/big").headers


def test_cors_is_off_by_default(container: ServiceContainerInstance) -> None:
    """Without allow_origins no Access-Control-* header is ever sent."""
    with _client(container) as client:
        response = client.get("/small", headers={"Origin": "https://evil.example"})
        preflight = client.options(
            "/small",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert not [h for h in response.headers if h.startswith("access-control-")]
    assert not [h for h in preflight.headers if h.startswith("access-control-")]


def test_cors_allows_listed_origins_only(container: ServiceContainerInstance) -> None:
    """A listed origin is echoed (never '*') with credentials; others get no CORS headers."""
    api = ApiSettings(
        cors=CorsSettings(allow_origins=["https://app.example"], allow_credentials=True)
    )
    with _client(container, api) as client:
        allowed = client.get("/small", headers={"Origin": "https://app.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert allowed.headers["access-control-allow-credentials"] == "true"
        assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
        preflight = client.options(
            "/small",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        denied = client.get("/small", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in denied.headers
        bad_preflight = client.options(
            "/small",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert bad_preflight.status_code == 400


def test_cors_settings_refuse_wildcards_with_credentials() -> None:
    """'*' with credentials, mixed '*' and origins, and origins with paths are refused."""
    for bad in (
        {"allow_origins": ["*"], "allow_credentials": True},
        {"allow_origins": ["https://a.example"], "allow_credentials": True, "allow_headers": ["*"]},
        {"allow_origins": ["*", "https://a.example"]},
        {"allow_origins": ["https://a.example/"]},
        {"allow_origins": ["a.example"]},
    ):
        with pytest.raises(ValidationError):
            CorsSettings.model_validate(bad)
    assert CorsSettings(allow_origins=["*"]).enabled
    assert CorsSettings(allow_origins=["http://localhost:3000", "https://[::1]:8443"]).enabled


def test_api_section_of_a_settings_subclass_is_used(tmp_path: Path) -> None:
    """A service whose Settings has `api: ApiSettings` configures create_app from YAML/env."""

    class ServiceSettings(Settings):
        api: ApiSettings = ApiSettings()

    class Container(ServiceContainer):
        settings_class = ServiceSettings

    config = tmp_path / "config.yaml"
    config.write_text(
        "api:\n  server_timing: false\n  cors:\n    allow_origins: [https://app.example]\n"
    )
    container = Container.from_yaml(config, env={}, env_file=None)
    with TestClient(create_app(container, routers=[_router()], configure_logs=False)) as client:
        response = client.get("/small", headers={"Origin": "https://app.example"})
    assert "server-timing" not in response.headers
    assert response.headers["access-control-allow-origin"] == "https://app.example"
