"""SecuritySettings validation, SecurityContainer in a ServiceContainer, API keys, exports."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

import dtpyfw.security
from dtpyfw.config import Settings, load_settings
from dtpyfw.container import ServiceContainer
from dtpyfw.core.errors import ConfigError, NotConfigured
from dtpyfw.security import (
    ApiKeyRecord,
    ApiKeys,
    JwtKey,
    MemoryDenyList,
    PasswordHasher,
    RedisDenyList,
    SecurityContainer,
    SecuritySettings,
    TokenService,
    generate_api_key,
    hash_api_key,
)
from dtpyfw.testing import closing_container

HS_KEY = {"kid": "k1", "algorithm": "HS256", "secret": "s" * 32}


def _settings(**security: Any) -> Settings:
    return Settings.model_validate({"security": {"bcrypt_rounds": 10, **security}})


def test_exports_are_sorted_and_resolve() -> None:
    """dtpyfw.security's __all__ is sorted, unique, and every name resolves."""
    exported = list(dtpyfw.security.__all__)
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    assert [n for n in exported if not hasattr(dtpyfw.security, n)] == []


def test_import_needs_neither_bcrypt_nor_jwt() -> None:
    """dtpyfw.security imports, and settings validate, with bcrypt and PyJWT blocked."""
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"bcrypt", "jwt", "cryptography", "fastapi", "redis"}:
                    raise ImportError(f"blocked: {name}")
                return None

        sys.meta_path.insert(0, Block())
        import dtpyfw.security
        from dtpyfw.security import PasswordHasher, SecuritySettings
        from dtpyfw.core.errors import DependencyMissing
        SecuritySettings(keys=[{"kid": "k", "algorithm": "HS256", "secret": "s" * 32}])
        try:
            PasswordHasher(10).hash("pw")
        except DependencyMissing as exc:
            assert "pip install 'dtpyfw[security]'" in str(exc), exc
        else:
            raise AssertionError("no DependencyMissing")
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_settings_refuse_inconsistent_keys(tmp_path: Path) -> None:
    """Short secrets, missing material, duplicate kids and a bad signing_key_id are refused."""
    bad = [
        {"keys": [{"kid": "k", "algorithm": "HS256", "secret": "short"}]},
        {"keys": [{"kid": "k", "algorithm": "HS256"}]},
        {"keys": [{"kid": "k", "algorithm": "RS256"}]},
        {"keys": [{"kid": "k", "algorithm": "RS256", "secret": "s" * 32}]},
        {"keys": [HS_KEY, HS_KEY]},
        {"keys": [HS_KEY], "signing_key_id": "nope"},
        {"keys": [{"kid": "k", "algorithm": "none", "secret": "s" * 32}]},
        {"keys": [{"kid": "k", "algorithm": "RS256", "public_key_file": str(tmp_path / "x")}]},
        {"jwks_url": "http://idp.example.com/jwks.json"},
        {"jwks_url": "ftp://127.0.0.1/jwks"},
        {"api_keys": [{"name": "a", "sha256": "not-a-digest"}]},
        {"bcrypt_rounds": 9},
        {"unknown_key": 1},
    ]
    for section in bad:
        with pytest.raises(ValidationError):
            SecuritySettings.model_validate(section)
    assert SecuritySettings(jwks_url="http://127.0.0.1:9/jwks.json").jwks_url
    assert SecuritySettings(jwks_url="https://idp.example.com/.well-known/jwks.json").jwks_url


def test_secrets_never_show(tmp_path: Path) -> None:
    """The HMAC secret and pepper are SecretStr: absent from repr and dumps."""
    settings = SecuritySettings(keys=[HS_KEY], pepper="pepper-value")
    assert "s" * 32 not in repr(settings)
    assert "pepper-value" not in repr(settings)
    assert "s" * 32 not in settings.model_dump_json()


def test_public_key_only_cannot_be_the_signing_key(tmp_path: Path) -> None:
    """A key with just a public PEM may verify but not be signing_key_id."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = tmp_path / "pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    entry = {"kid": "pub", "algorithm": "ES256", "public_key_file": str(public)}
    with pytest.raises(ValidationError, match="only a public key"):
        SecuritySettings(keys=[entry], signing_key_id="pub")
    settings = SecuritySettings(keys=[entry, HS_KEY])
    assert settings.signing_key() is not None
    assert settings.signing_key().kid == "k1"  # type: ignore[union-attr]


def test_container_builds_services_from_yaml(tmp_path: Path) -> None:
    """A security section with PEM files yields a hasher, a token service and API keys."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "signing.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    api_key, digest = generate_api_key()
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            security:
              bcrypt_rounds: 10
              issuer: notes
              audience: [notes-api]
              access_token_ttl: 60
              keys:
                - kid: es-2024
                  algorithm: ES256
                  private_key_file: {pem}
              api_keys:
                - name: ci
                  sha256: {digest}
                  scopes: [deploy]
            """
        )
    )
    container = ServiceContainer.from_settings(load_settings(config, env={}, env_file=None))
    container.validate()
    with container.running():
        service = container.security.token_service()
        assert isinstance(service, TokenService)
        assert service is container.security.token_service()
        token = service.issue_access("u")
        assert service.verify(token)["iss"] == "notes"
        assert [k["kid"] for k in service.jwks()["keys"]] == ["es-2024"]
        assert isinstance(container.security.password_hasher(), PasswordHasher)
        assert container.security.password_hasher().rounds == 10
        record = container.security.api_keys().verify(api_key)
        assert record == ApiKeyRecord(name="ci", sha256=digest, scopes=("deploy",))
        assert isinstance(container.security.deny_list(), MemoryDenyList)


def test_bad_pem_fails_at_start_with_the_key_named(tmp_path: Path) -> None:
    """A PEM that does not parse fails init_resources (start), naming security.keys.<n>."""
    pem = tmp_path / "broken.pem"
    pem.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    settings = _settings(keys=[{"kid": "k", "algorithm": "RS256", "private_key_file": str(pem)}])
    container = ServiceContainer.from_settings(settings)
    container.validate()
    with pytest.raises(ConfigError, match=r"security\.keys\.0"):
        container.init_resources()


def test_absent_security_section_is_not_configured() -> None:
    """Without a security section the container validates and resolving raises NotConfigured."""
    container = ServiceContainer.from_settings(Settings())
    container.validate()
    assert container.subsystems["security"] is False
    with pytest.raises(NotConfigured, match="security"):
        container.security.token_service()


def test_memory_deny_list_without_redis_validates_and_starts() -> None:
    """security without redis: validate, init and shutdown all pass; nothing touches redis."""
    container = ServiceContainer.from_settings(_settings(keys=[HS_KEY]))
    container.validate()
    asyncio.run(container.ainit_resources())
    try:
        assert container.security.token_service().deny_list is container.security.deny_list()
        assert container.health().ok
    finally:
        asyncio.run(container.ashutdown_resources())


def test_redis_deny_list_needs_the_redis_section() -> None:
    """deny_list: redis without a redis section fails at start with a precise message."""
    container = ServiceContainer.from_settings(_settings(keys=[HS_KEY], deny_list="redis"))
    container.validate()
    with pytest.raises(ConfigError, match=r"security\.deny_list.*`redis:` section"):
        container.init_resources()


def test_redis_deny_list_is_chosen_by_settings_without_connecting() -> None:
    """With a redis section the Redis deny-list is built, and no connection is made yet."""
    settings = Settings.model_validate(
        {
            "security": {"keys": [HS_KEY], "deny_list": "redis", "redis_prefix": "svc:"},
            "redis": {"host": "127.0.0.1", "port": 1},
        }
    )
    with closing_container(settings) as container:
        deny_list = container.security.deny_list()
        assert isinstance(deny_list, RedisDenyList)
        assert deny_list.prefix == "svc:"


def test_override_security_replaces_the_token_service() -> None:
    """override(security=...) swaps the primary provider, the token service."""
    container = ServiceContainer.from_settings(_settings(keys=[HS_KEY]))
    fake = object()
    with container.override(security=fake):
        assert container.security.token_service() is fake
    assert isinstance(container.security.token_service(), TokenService)


def test_security_container_alone() -> None:
    """SecurityContainer works outside ServiceContainer with just its settings."""
    container = SecurityContainer(settings=SecuritySettings(keys=[HS_KEY], bcrypt_rounds=10))
    try:
        service = container.token_service()
        assert service.verify(service.issue_access("u"))["sub"] == "u"
        assert container.keys.initialized
    finally:
        container.shutdown_resources()
    assert not container.keys.initialized


def test_empty_keys_give_an_ephemeral_key_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """No keys configured: tokens still work within the process, and a warning says why not more."""
    container = SecurityContainer(settings=SecuritySettings())
    with caplog.at_level("WARNING", logger="dtpyfw.security"):
        service = container.token_service()
    assert any("ephemeral" in r.getMessage() for r in caplog.records)
    assert service.verify(service.issue_access("u"))["sub"] == "u"
    other = SecurityContainer(settings=SecuritySettings()).token_service()
    assert other.jwks() == {"keys": []}


def test_api_keys_are_hashed_and_compared_in_constant_time() -> None:
    """Keys verify by SHA-256; every stored digest goes through hmac.compare_digest."""
    key, digest = generate_api_key("test_")
    assert key.startswith("test_")
    assert len(key) > 40
    assert digest == hashlib.sha256(key.encode()).hexdigest() == hash_api_key(key)
    other_key, other_digest = generate_api_key()
    keys = ApiKeys([ApiKeyRecord("a", digest, ("read",)), ApiKeyRecord("b", other_digest, ())])
    with mock.patch("hmac.compare_digest", wraps=hmac.compare_digest) as compare:
        assert keys.verify(key) == ApiKeyRecord("a", digest, ("read",))
    assert compare.call_count == 2  # no early exit on the first match
    assert keys.verify(other_key) is not None
    for wrong in ("", "x", key + "x", key.upper(), "k" * 10_000, None, 5):
        assert keys.verify(wrong) is None  # type: ignore[arg-type]
    assert key not in repr(keys)
    assert asyncio.run(keys.averify(key)) is not None


def test_token_service_uses_the_configured_deny_list() -> None:
    """The deny-list the container built is the one the token service consults."""
    container = SecurityContainer(settings=SecuritySettings(keys=[HS_KEY]))
    service = container.token_service()
    token = service.issue_access("u")
    jti = service.verify(token)["jti"]
    assert not container.deny_list().is_revoked(jti)
    service.revoke(token)
    assert container.deny_list().is_revoked(jti)


def test_jwt_key_from_settings_reads_pem(tmp_path: Path) -> None:
    """JwtKey.from_settings loads a private PEM file and can sign."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "k.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings = SecuritySettings(
        keys=[{"kid": "k", "algorithm": "ES256", "private_key_file": str(pem)}]
    )
    loaded = JwtKey.from_settings(settings.keys[0])
    assert loaded.can_sign
    assert not loaded.is_symmetric
    assert importlib.import_module("dtpyfw.security._keys").KeySet([loaded]).signing is loaded
