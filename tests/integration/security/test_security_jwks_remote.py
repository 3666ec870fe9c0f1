"""Verification against a remote JWKS served by a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from dtpyfw.core.errors import HttpError
from dtpyfw.security import (
    InvalidSignature,
    JwksClient,
    JwtKey,
    KeySet,
    SecuritySettings,
    TokenService,
)


class JwksServer:
    """Serves ``document`` at /jwks.json and counts the requests it answered."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.status = 200
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = json.dumps(server.document).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/jwks.json"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="module")
def issuer_keys() -> dict[str, JwtKey]:
    return {
        "rs-1": JwtKey.from_pem(
            "rs-1",
            "RS256",
            private_pem=_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ),
        "es-2": JwtKey.from_pem(
            "es-2", "ES256", private_pem=_pem(ec.generate_private_key(ec.SECP256R1()))
        ),
        "ed-3": JwtKey.from_pem(
            "ed-3", "EdDSA", private_pem=_pem(ed25519.Ed25519PrivateKey.generate())
        ),
    }


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with JwksServer() as running:
        yield running


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _issuer(key: JwtKey) -> TokenService:
    return TokenService(KeySet([key]), issuer="https://idp.test", audience="api")


def _verifier(server: JwksServer, clock: Clock, **options: Any) -> TokenService:
    jwks = JwksClient(server.url, clock=clock, **options)
    return TokenService(KeySet([]), issuer="https://idp.test", audience="api", jwks=jwks)


def _publish(server: JwksServer, *keys: JwtKey) -> None:
    server.document = {"keys": [key.public_jwk() for key in keys]}


def test_remote_keys_verify_and_are_cached(
    server: JwksServer, issuer_keys: dict[str, JwtKey]
) -> None:
    """The JWKS is fetched once; many verifications later, still one request."""
    _publish(server, issuer_keys["rs-1"], issuer_keys["es-2"])
    clock = Clock()
    verifier = _verifier(server, clock, cache_ttl=300)
    for kid in ("rs-1", "es-2", "rs-1", "es-2"):
        for _ in range(5):
            token = _issuer(issuer_keys[kid]).issue_access("u")
            assert verifier.verify(token)["sub"] == "u"
    assert server.requests == 1


def test_cache_expires_after_its_ttl(server: JwksServer, issuer_keys: dict[str, JwtKey]) -> None:
    """Past cache_ttl the next verification fetches the document again, once."""
    _publish(server, issuer_keys["rs-1"])
    clock = Clock()
    verifier = _verifier(server, clock, cache_ttl=60)
    token = _issuer(issuer_keys["rs-1"]).issue_access("u")
    verifier.verify(token)
    clock.now += 59
    verifier.verify(token)
    assert server.requests == 1
    clock.now += 2
    verifier.verify(token)
    verifier.verify(token)
    assert server.requests == 2


def test_unknown_kid_triggers_one_rate_limited_refresh(
    server: JwksServer, issuer_keys: dict[str, JwtKey]
) -> None:
    """A new kid (a rotation at the issuer) refreshes once; a flood of bogus kids does not."""
    _publish(server, issuer_keys["rs-1"])
    clock = Clock()
    verifier = _verifier(server, clock, cache_ttl=3600, refresh_interval=30)
    verifier.verify(_issuer(issuer_keys["rs-1"]).issue_access("u"))
    assert server.requests == 1
    clock.now += 31
    _publish(server, issuer_keys["rs-1"], issuer_keys["es-2"])  # the issuer rotates
    assert verifier.verify(_issuer(issuer_keys["es-2"]).issue_access("u"))["sub"] == "u"
    assert server.requests == 2
    bogus = TokenService(
        KeySet([JwtKey.hmac("made-up", "x" * 32)]), issuer="https://idp.test", audience="api"
    )
    for _ in range(20):
        with pytest.raises(InvalidSignature, match="unknown key"):
            verifier.verify(bogus.issue_access("u"))
    assert server.requests == 2  # inside the refresh interval: no new request
    clock.now += 31
    with pytest.raises(InvalidSignature):
        verifier.verify(bogus.issue_access("u"))
    assert server.requests == 3  # one more refresh, then quiet again


async def test_async_verification_uses_the_same_cache(
    server: JwksServer, issuer_keys: dict[str, JwtKey]
) -> None:
    """averify fetches without blocking the loop and shares the cache with verify."""
    _publish(server, issuer_keys["ed-3"])
    clock = Clock()
    verifier = _verifier(server, clock)
    token = _issuer(issuer_keys["ed-3"]).issue_access("u")
    assert (await verifier.averify(token))["sub"] == "u"
    assert verifier.verify(token)["sub"] == "u"
    assert (await verifier.averify(token))["sub"] == "u"
    assert server.requests == 1


def test_remote_symmetric_keys_are_ignored(
    server: JwksServer, issuer_keys: dict[str, JwtKey]
) -> None:
    """An oct key in the JWKS is skipped: nobody can mint HS tokens from a public document."""
    server.document = {
        "keys": [
            {"kty": "oct", "kid": "hs", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
            issuer_keys["rs-1"].public_jwk(),
        ]
    }
    verifier = _verifier(server, Clock())
    hs = TokenService(
        KeySet([JwtKey.hmac("hs", b"secret-secret-secret-secret-secret")]),
        issuer="https://idp.test",
        audience="api",
    )
    with pytest.raises(InvalidSignature):
        verifier.verify(hs.issue_access("u"))
    assert verifier.verify(_issuer(issuer_keys["rs-1"]).issue_access("u"))


def test_unreachable_jwks_is_a_gateway_error_and_stale_keys_keep_serving(
    server: JwksServer, issuer_keys: dict[str, JwtKey]
) -> None:
    """No JWKS yet: HttpError (502). Cached keys survive a failing refresh after the TTL."""
    _publish(server, issuer_keys["rs-1"])
    server.status = 500
    clock = Clock()
    verifier = _verifier(server, clock, cache_ttl=60, refresh_interval=10)
    token = _issuer(issuer_keys["rs-1"]).issue_access("u")
    with pytest.raises(HttpError) as caught:
        verifier.verify(token)
    assert caught.value.http_status == 502
    with pytest.raises(HttpError):
        verifier.verify(token)  # within the interval: answered without a request
    assert server.requests == 1
    clock.now += 11
    server.status = 200
    assert verifier.verify(token)["sub"] == "u"
    server.status = 500
    clock.now += 61
    assert verifier.verify(token)["sub"] == "u"  # refresh failed; the cached key still works
    assert server.requests == 3


def test_settings_build_a_verify_only_service(
    server: JwksServer, issuer_keys: dict[str, JwtKey]
) -> None:
    """security.jwks_url with no local keys: a resource server that only verifies."""
    _publish(server, issuer_keys["es-2"])
    settings = SecuritySettings(
        jwks_url=server.url, issuer="https://idp.test", audience=["api"], jwks_cache_ttl=120
    )
    jwks = JwksClient.from_settings(settings)
    assert jwks is not None
    service = TokenService.from_settings(settings, jwks=jwks)
    assert service.verify(_issuer(issuer_keys["es-2"]).issue_access("u"))["sub"] == "u"
    assert service.jwks() == {"keys": []}
