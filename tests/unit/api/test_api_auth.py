"""Auth dependencies: 401 vs 403, RFC 6750 challenges, problem details, API keys, JWKS."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from dtpyfw.api import (
    CurrentUser,
    Principal,
    api_key_user,
    authenticate,
    create_app,
    install_problem_handlers,
    jwks_router,
    require_permissions,
    require_roles,
    require_scopes,
)
from dtpyfw.container import ServiceContainerInstance
from dtpyfw.security import (
    ApiKeyRecord,
    ApiKeys,
    JwtKey,
    KeySet,
    TokenService,
    generate_api_key,
)
from dtpyfw.testing import closing_container, embedded_settings

API_KEY, API_KEY_SHA256 = generate_api_key()


def _router() -> APIRouter:
    router = APIRouter()
    both = authenticate(api_key=True)

    @router.get("/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return {
            "subject": user.subject,
            "scopes": sorted(user.scopes),
            "roles": sorted(user.roles),
            "method": user.method,
            "team": user.claims.get("team"),
        }

    @router.get("/write", dependencies=[Depends(require_scopes("notes:write"))])
    async def write() -> dict[str, bool]:
        return {"ok": True}

    admins = require_roles("admin")

    @router.get("/admin")
    async def admin(user: Principal = Depends(admins)) -> dict[str, str]:
        return {"subject": user.subject}

    @router.get("/delete", dependencies=[Depends(require_permissions("notes.delete"))])
    async def delete() -> dict[str, bool]:
        return {"ok": True}

    @router.get("/machine")
    async def machine(user: Principal = Depends(api_key_user)) -> dict[str, Any]:
        return {"subject": user.subject, "scopes": sorted(user.scopes)}

    @router.get("/either", dependencies=[Depends(require_scopes("deploy", auth=both))])
    async def either() -> dict[str, bool]:
        return {"ok": True}

    return router


@pytest.fixture
def container(tmp_path: Path) -> Iterator[ServiceContainerInstance]:
    settings = embedded_settings(
        tmp_path,
        security={
            "bcrypt_rounds": 10,
            "issuer": "test-issuer",
            "audience": ["test-api"],
            "keys": [{"kid": "k1", "algorithm": "HS256", "secret": "s" * 32}],
            "api_keys": [{"name": "ci-bot", "sha256": API_KEY_SHA256, "scopes": ["deploy"]}],
        },
    )
    with closing_container(settings) as built:
        yield built


@pytest.fixture
def client(container: ServiceContainerInstance) -> Iterator[TestClient]:
    app = create_app(container, routers=[_router(), jwks_router()], configure_logs=False)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def tokens(container: ServiceContainerInstance) -> TokenService:
    service: TokenService = container.security.token_service()
    return service


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_valid_token_gives_the_principal(client: TestClient, tokens: TokenService) -> None:
    """CurrentUser carries subject, scopes, roles and the raw claims."""
    token = tokens.issue_access(
        "user-7", scopes=["notes:read"], claims={"roles": ["editor"], "team": "blue"}
    )
    response = client.get("/me", headers=_bearer(token))
    assert response.status_code == 200
    assert response.json() == {
        "subject": "user-7",
        "scopes": ["notes:read"],
        "roles": ["editor"],
        "method": "bearer",
        "team": "blue",
    }


def test_missing_credentials_is_401_without_error_code(client: TestClient) -> None:
    """No credentials: 401 problem, a challenge with the realm and no error (RFC 6750 3.1)."""
    for headers in ({}, {"Authorization": "Basic dTpw"}, {"Authorization": "Bearer"}):
        response = client.get("/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == 'Bearer realm="test-service"'
        body = response.json()
        assert body["type"] == "urn:dtpyfw:problem:unauthorized"
        assert body["status"] == 401
        assert body["request_id"] == response.headers["x-request-id"]


def test_invalid_token_is_401_invalid_token(client: TestClient, tokens: TokenService) -> None:
    """A bad, expired or foreign token: 401 with error="invalid_token" and a description."""
    expired = TokenService(
        tokens.keys,
        issuer="test-issuer",
        audience="test-api",
        leeway=0,
        clock=lambda: time.time() - 3600,
    ).issue_access("u")
    foreign = TokenService(
        KeySet([JwtKey.hmac("k1", "x" * 32)]), issuer="test-issuer", audience="test-api"
    ).issue_access("u")
    for token, detail in [
        ("garbage", "three dot-separated parts"),
        (expired, "expired"),
        (foreign, "signature"),
        (tokens.issue_pair("u").refresh_token, "refresh token"),
    ]:
        response = client.get("/me", headers=_bearer(token))
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="test-service", error="invalid_token"')
        assert "error_description=" in challenge
        assert response.json()["type"] == "urn:dtpyfw:problem:invalid-token"
        assert detail in response.json()["detail"]
        assert token not in response.text


def test_missing_scope_is_403_insufficient_scope(client: TestClient, tokens: TokenService) -> None:
    """Authenticated without the scope: 403 with error="insufficient_scope" and scope="..."."""
    reader = tokens.issue_access("u", scopes=["notes:read"])
    response = client.get("/write", headers=_bearer(reader))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="test-service", error="insufficient_scope", scope="notes:write"'
    )
    assert response.json()["type"] == "urn:dtpyfw:problem:forbidden"
    writer = tokens.issue_access("u", scopes=["notes:read", "notes:write"])
    assert client.get("/write", headers=_bearer(writer)).json() == {"ok": True}
    assert client.get("/write").status_code == 401  # no token at all is still 401


def test_roles_and_permissions(client: TestClient, tokens: TokenService) -> None:
    """Missing role or permission is 403; holding it passes."""
    plain = tokens.issue_access("u")
    admin = tokens.issue_access("u", claims={"roles": ["admin"], "permissions": ["notes.delete"]})
    denied = client.get("/admin", headers=_bearer(plain))
    assert denied.status_code == 403
    assert "admin" in denied.json()["detail"]
    assert denied.headers["www-authenticate"].startswith('Bearer realm="test-service"')
    assert client.get("/admin", headers=_bearer(admin)).json() == {"subject": "u"}
    assert client.get("/delete", headers=_bearer(plain)).status_code == 403
    assert client.get("/delete", headers=_bearer(admin)).status_code == 200


def test_wrongly_typed_role_claim_is_401(client: TestClient, tokens: TokenService) -> None:
    """roles must be a list of strings; anything else makes the token malformed."""
    token = tokens.issue_access("u", claims={"roles": "admin"})
    response = client.get("/admin", headers=_bearer(token))
    assert response.status_code == 401
    assert "roles" in response.json()["detail"]


def test_api_keys(client: TestClient) -> None:
    """A configured key authenticates as its name with its scopes; others are 401."""
    ok = client.get("/machine", headers={"X-API-Key": API_KEY})
    assert ok.json() == {"subject": "ci-bot", "scopes": ["deploy"]}
    wrong = client.get("/machine", headers={"X-API-Key": API_KEY + "x"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith('ApiKey realm="test-service"')
    missing = client.get("/machine")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'ApiKey realm="test-service"'


def test_either_scheme_with_scope(client: TestClient, tokens: TokenService) -> None:
    """An authenticator accepting both schemes lists both challenges and checks scopes on each."""
    assert client.get("/either", headers={"X-API-Key": API_KEY}).status_code == 200
    token = tokens.issue_access("u", scopes=["deploy"])
    assert client.get("/either", headers=_bearer(token)).status_code == 200
    missing = client.get("/either")
    assert missing.headers["www-authenticate"] == (
        'Bearer realm="test-service", ApiKey realm="test-service"'
    )
    denied = client.get("/either", headers=_bearer(tokens.issue_access("u")))
    assert denied.status_code == 403
    assert 'scope="deploy"' in denied.headers["www-authenticate"]


def test_revoked_token_is_rejected(client: TestClient, tokens: TokenService) -> None:
    """A revoked token's next request is 401 invalid_token."""
    token = tokens.issue_access("u")
    assert client.get("/me", headers=_bearer(token)).status_code == 200
    tokens.revoke(token)
    response = client.get("/me", headers=_bearer(token))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_openapi_declares_both_schemes(client: TestClient) -> None:
    """The OpenAPI document lists the bearer and API key security schemes."""
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"


def test_jwks_route_publishes_public_keys(tmp_path: Path) -> None:
    """/.well-known/jwks.json serves the public keys with a cache header; secrets never."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "k.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings = embedded_settings(
        tmp_path,
        security={
            "keys": [
                {"kid": "es", "algorithm": "ES256", "private_key_file": str(pem)},
                {"kid": "hs", "algorithm": "HS256", "secret": "s" * 32},
            ]
        },
    )
    with (
        closing_container(settings) as container,
        TestClient(create_app(container, routers=[jwks_router()], configure_logs=False)) as client,
    ):
        response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jwk-set+json"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert [k["kid"] for k in response.json()["keys"]] == ["es"]
    assert "s" * 32 not in response.text


def test_explicit_services_work_on_a_plain_fastapi_app() -> None:
    """authenticate(token_service=..., api_keys=...) needs no container."""
    service = TokenService(KeySet([JwtKey.hmac("k", "k" * 32)]), issuer="i", audience="a")
    keys = ApiKeys([ApiKeyRecord("bot", API_KEY_SHA256, ("x",))])
    auth = authenticate(api_key=True, realm="plain", token_service=service, api_keys=keys)
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/who")
    async def who(user: Principal = Depends(auth)) -> dict[str, str]:
        return {"subject": user.subject}

    with TestClient(app) as client:
        assert client.get("/who", headers=_bearer(service.issue_access("u"))).json() == {
            "subject": "u"
        }
        assert client.get("/who", headers={"X-API-Key": API_KEY}).json() == {"subject": "bot"}
        missing = client.get("/who")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="plain", ApiKey realm="plain"'
    with pytest.raises(ValueError, match="bearer=True"):
        authenticate(bearer=False)
