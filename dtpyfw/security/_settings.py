"""The ``security`` section: password hashing, token keys and lifetimes, API keys."""

from __future__ import annotations

__all__ = ["ApiKeySettings", "JwtKeySettings", "SecuritySettings"]

import ipaddress
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, model_validator

#: Every algorithm a key may use; ``none`` is not and never will be one of them.
Algorithm = Literal["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"]
HMAC_ALGORITHMS: frozenset[str] = frozenset({"HS256", "HS384", "HS512"})
#: RFC 7518 3.2: an HMAC key must be at least as long as the hash output.
HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
MIN_BCRYPT_ROUNDS = 10


class JwtKeySettings(BaseModel):
    """One signing or verification key, named by its ``kid``.

    HMAC keys (HS256/384/512) take ``secret``; asymmetric keys (RS256, ES256,
    EdDSA) take a PEM ``private_key_file`` (it can sign, and its public half
    verifies) or only a ``public_key_file`` (verify only).
    """

    model_config = ConfigDict(extra="forbid")

    kid: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="key id written in the token header and published in the JWKS",
    )
    algorithm: Algorithm = Field(
        description="the only algorithm this key signs and verifies with (pinned per key)"
    )
    secret: SecretStr | None = Field(
        default=None,
        description="HMAC secret (HS*): at least 32/48/64 bytes for HS256/384/512",
    )
    private_key_file: FilePath | None = Field(
        default=None, description="PEM private key (RS256, ES256, EdDSA): signs and verifies"
    )
    public_key_file: FilePath | None = Field(
        default=None, description="PEM public key (RS256, ES256, EdDSA): verifies only"
    )

    @model_validator(mode="after")
    def _material_matches_algorithm(self) -> Self:
        if self.algorithm in HMAC_ALGORITHMS:
            if self.secret is None:
                raise ValueError(f"key {self.kid!r}: {self.algorithm} needs `secret`")
            if self.private_key_file is not None or self.public_key_file is not None:
                raise ValueError(
                    f"key {self.kid!r}: {self.algorithm} takes a secret, not PEM files"
                )
            size = len(self.secret.get_secret_value().encode("utf-8"))
            if size < HMAC_MIN_BYTES[self.algorithm]:
                raise ValueError(
                    f"key {self.kid!r}: an {self.algorithm} secret needs at least "
                    f"{HMAC_MIN_BYTES[self.algorithm]} bytes (got {size})"
                )
        else:
            if self.secret is not None:
                raise ValueError(
                    f"key {self.kid!r}: {self.algorithm} takes PEM files, not a secret"
                )
            if self.private_key_file is None and self.public_key_file is None:
                raise ValueError(
                    f"key {self.kid!r}: {self.algorithm} needs `private_key_file` "
                    "or `public_key_file`"
                )
        return self

    @property
    def can_sign(self) -> bool:
        """Whether this key holds signing material (a secret or a private key)."""
        return self.secret is not None or self.private_key_file is not None


class ApiKeySettings(BaseModel):
    """One API key, stored as the SHA-256 of the key (``dtpyfw.security.hash_api_key``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="who holds the key; becomes the subject")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="lower-case hex SHA-256 of the key; the key itself is never stored",
    )
    scopes: list[str] = Field(default_factory=list, description="scopes the key grants")


class SecuritySettings(BaseModel):
    """The ``security`` section."""

    model_config = ConfigDict(extra="forbid")

    bcrypt_rounds: int = Field(
        default=12,
        ge=MIN_BCRYPT_ROUNDS,
        le=20,
        description="bcrypt cost (log2 rounds); 10 is the enforced minimum, each +1 doubles "
        "the time (see benchmarks/bench_security.py for this machine's table)",
    )
    pepper: SecretStr | None = Field(
        default=None,
        description="server-side secret mixed into every password (HMAC-SHA256) before "
        "bcrypt; changing it invalidates every stored hash",
    )
    issuer: str = Field(
        default="dtpyfw", min_length=1, description="`iss` written into and required of tokens"
    )
    audience: list[str] = Field(
        default_factory=lambda: ["dtpyfw"],
        min_length=1,
        description="`aud` accepted on verification; the first one is written into tokens",
    )
    access_token_ttl: int = Field(
        default=900, ge=1, description="seconds an access token stays valid"
    )
    refresh_token_ttl: int = Field(
        default=14 * 24 * 3600, ge=1, description="seconds a refresh token stays valid"
    )
    leeway: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="seconds of clock skew tolerated on exp, nbf and iat",
    )
    signing_key_id: str | None = Field(
        default=None,
        description="kid of the key that signs new tokens; default: the first key that can sign",
    )
    keys: list[JwtKeySettings] = Field(
        default_factory=list,
        description="signing and verification keys; the others verify tokens signed before a "
        "rotation. Empty: an ephemeral HMAC key per process (local runs only; logged)",
    )
    jwks_url: str | None = Field(
        default=None,
        description="remote JWKS URL whose public keys also verify tokens (https, or http on "
        "loopback only)",
    )
    jwks_cache_ttl: float = Field(
        default=300.0, gt=0, description="seconds the remote JWKS is cached"
    )
    jwks_refresh_interval: float = Field(
        default=30.0,
        ge=0,
        description="at most one early JWKS refresh per this many seconds when an unknown kid "
        "arrives",
    )
    jwks_timeout: float = Field(default=5.0, gt=0, description="seconds to fetch the remote JWKS")
    max_token_bytes: int = Field(
        default=8192,
        ge=256,
        description="tokens longer than this are rejected before any decoding",
    )
    deny_list: Literal["memory", "redis"] = Field(
        default="memory",
        description="where revoked token ids and refresh families live: memory (one process) "
        "or redis (needs the `redis:` section)",
    )
    redis_prefix: str = Field(
        default="dtpyfw:security:", description="prefix of every Redis key the deny-list writes"
    )
    api_keys: list[ApiKeySettings] = Field(
        default_factory=list, description="accepted API keys, by SHA-256"
    )
    realm: str | None = Field(
        default=None,
        description="realm of WWW-Authenticate challenges; default: the service name",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        kids = [key.kid for key in self.keys]
        duplicates = sorted({kid for kid in kids if kids.count(kid) > 1})
        if duplicates:
            raise ValueError(f"duplicate key id(s): {', '.join(duplicates)}")
        if self.signing_key_id is not None:
            chosen = next((k for k in self.keys if k.kid == self.signing_key_id), None)
            if chosen is None:
                raise ValueError(
                    f"signing_key_id {self.signing_key_id!r} is not among the keys "
                    f"({', '.join(kids) or 'none configured'})"
                )
            if not chosen.can_sign:
                raise ValueError(
                    f"signing key {chosen.kid!r} has only a public key; give it "
                    "`private_key_file` or choose another signing_key_id"
                )
        if self.jwks_url is not None:
            _check_jwks_url(self.jwks_url)
        names = [key.name for key in self.api_keys]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"duplicate API key name(s): {', '.join(repeated)}")
        return self

    def signing_key(self) -> JwtKeySettings | None:
        """The key that signs new tokens, or None when no configured key can sign."""
        if self.signing_key_id is not None:
            return next(k for k in self.keys if k.kid == self.signing_key_id)
        return next((k for k in self.keys if k.can_sign), None)


def _check_jwks_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    raise ValueError(
        "jwks_url must be an https:// URL (http:// is accepted on loopback only), "
        f"got {parts.scheme or 'no'} scheme"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
