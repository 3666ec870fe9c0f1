"""Signing and verification keys: one signs, all verify, each pinned to one algorithm."""

from __future__ import annotations

__all__ = ["JwtKey", "KeySet"]

import logging
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dtpyfw.core._extras import require
from dtpyfw.core.errors import ConfigError, ConfigIssue
from dtpyfw.security._errors import SecurityError
from dtpyfw.security._settings import HMAC_ALGORITHMS, HMAC_MIN_BYTES

if TYPE_CHECKING:
    from dtpyfw.security._settings import JwtKeySettings, SecuritySettings

_log = logging.getLogger("dtpyfw.security")
ASYMMETRIC_ALGORITHMS: frozenset[str] = frozenset({"RS256", "ES256", "EdDSA"})
MIN_RSA_BITS = 2048
EPHEMERAL_KID = "ephemeral"


@dataclass(frozen=True, slots=True)
class JwtKey:
    """A key and the one algorithm it may be used with.

    ``signing_key`` is the HMAC secret or the private key object (None for a
    verify-only key); ``verifying_key`` is the secret or the public key object.
    Build one with :meth:`hmac`, :meth:`from_pem` or :meth:`from_jwk`, which check
    that the material fits the algorithm.
    """

    kid: str
    algorithm: str
    verifying_key: Any = field(repr=False)
    signing_key: Any = field(default=None, repr=False)

    @property
    def can_sign(self) -> bool:
        """Whether the key holds signing material."""
        return self.signing_key is not None

    @property
    def is_symmetric(self) -> bool:
        """HMAC keys verify with their secret, so they never appear in a JWKS."""
        return self.algorithm in HMAC_ALGORITHMS

    @classmethod
    def hmac(cls, kid: str, secret: str | bytes, algorithm: str = "HS256") -> JwtKey:
        """An HMAC key; the secret must be at least as long as the hash (RFC 7518 3.2)."""
        if algorithm not in HMAC_ALGORITHMS:
            raise ValueError(f"key {kid!r}: {algorithm} is not an HMAC algorithm")
        material = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(material) < HMAC_MIN_BYTES[algorithm]:
            raise ValueError(
                f"key {kid!r}: an {algorithm} secret needs at least "
                f"{HMAC_MIN_BYTES[algorithm]} bytes (got {len(material)})"
            )
        return cls(kid=kid, algorithm=algorithm, verifying_key=material, signing_key=material)

    @classmethod
    def from_pem(
        cls,
        kid: str,
        algorithm: str,
        *,
        private_pem: bytes | None = None,
        public_pem: bytes | None = None,
    ) -> JwtKey:
        """An asymmetric key from PEM: the private key signs and its public half verifies."""
        require("cryptography", "security")
        from cryptography.hazmat.primitives import serialization

        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise ValueError(f"key {kid!r}: {algorithm} is not an asymmetric algorithm")
        private: Any = None
        if private_pem is not None:
            try:
                private = serialization.load_pem_private_key(private_pem, password=None)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"key {kid!r}: not an unencrypted PEM private key ({type(exc).__name__})"
                ) from None
            public: Any = private.public_key()
        elif public_pem is not None:
            try:
                public = serialization.load_pem_public_key(public_pem)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"key {kid!r}: not a PEM public key ({type(exc).__name__})"
                ) from None
        else:
            raise ValueError(f"key {kid!r}: give a private or a public PEM key")
        _check_fits(kid, algorithm, public)
        return cls(kid=kid, algorithm=algorithm, verifying_key=public, signing_key=private)

    @classmethod
    def from_jwk(
        cls, jwk: Mapping[str, Any], *, algorithms: Iterable[str] = ASYMMETRIC_ALGORITHMS
    ) -> JwtKey:
        """A verify-only key from a public JWK; symmetric (``oct``) JWKs are refused."""
        jwt = require("jwt", "security")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError("the JWK has no kid")
        if jwk.get("kty") == "oct":
            raise ValueError(f"JWK {kid!r}: symmetric keys are never taken from a JWKS")
        if any(name in jwk for name in ("d", "p", "q")):
            raise ValueError(f"JWK {kid!r}: holds private material; refusing it")
        try:
            parsed = jwt.PyJWK(dict(jwk))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"JWK {kid!r}: {type(exc).__name__}") from None
        algorithm = str(parsed.algorithm_name)
        if algorithm not in set(algorithms):
            raise ValueError(f"JWK {kid!r}: algorithm {algorithm} is not accepted")
        _check_fits(kid, algorithm, parsed.key)
        return cls(kid=kid, algorithm=algorithm, verifying_key=parsed.key)

    @classmethod
    def from_settings(cls, settings: JwtKeySettings) -> JwtKey:
        """The key one ``security.keys`` entry describes (PEM files are read here)."""
        if settings.secret is not None:
            return cls.hmac(settings.kid, settings.secret.get_secret_value(), settings.algorithm)
        return cls.from_pem(
            settings.kid,
            settings.algorithm,
            private_pem=_read(settings.private_key_file),
            public_pem=_read(settings.public_key_file)
            if settings.private_key_file is None
            else None,
        )

    def public_jwk(self) -> dict[str, Any] | None:
        """The public JWK (``kid``, ``alg``, ``use``), or None for an HMAC key."""
        if self.is_symmetric:
            return None
        jwt = require("jwt", "security")
        algorithms = jwt.algorithms
        if self.algorithm == "RS256":
            jwk = algorithms.RSAAlgorithm.to_jwk(self.verifying_key, as_dict=True)
        elif self.algorithm == "ES256":
            jwk = algorithms.ECAlgorithm.to_jwk(self.verifying_key, as_dict=True)
        else:
            jwk = algorithms.OKPAlgorithm.to_jwk(self.verifying_key, as_dict=True)
        jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        return dict(jwk)


class KeySet:
    """The keys a :class:`~dtpyfw.security.TokenService` signs and verifies with.

    ``signing`` signs every new token (its ``kid`` goes in the header); every key
    verifies the tokens whose header names it. To rotate: add the new key, make
    it the signing key, and drop the old one once its tokens have expired.
    """

    def __init__(self, keys: Iterable[JwtKey], signing_kid: str | None = None) -> None:
        self._keys: dict[str, JwtKey] = {}
        for key in keys:
            if key.kid in self._keys:
                raise ValueError(f"duplicate key id {key.kid!r}")
            self._keys[key.kid] = key
        if signing_kid is not None:
            chosen = self._keys.get(signing_kid)
            if chosen is None or not chosen.can_sign:
                raise ValueError(f"no key {signing_kid!r} that can sign")
            self.signing: JwtKey | None = chosen
        else:
            self.signing = next((k for k in self._keys.values() if k.can_sign), None)
        self._jwks: dict[str, Any] | None = None

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> KeySet:
        """Keys from ``security.keys``; none at all gives one ephemeral HS256 key (logged).

        An unreadable or unfitting PEM raises :class:`~dtpyfw.core.errors.ConfigError`
        naming the key.
        """
        if not settings.keys:
            if settings.jwks_url is not None:
                return cls([])  # verify-only service: the issuer's JWKS holds the keys
            _log.warning(
                "security.keys is empty: tokens are signed with an ephemeral key that dies "
                "with this process and is not shared with other instances; configure keys "
                "for anything but a local run"
            )
            return cls([JwtKey.hmac(EPHEMERAL_KID, secrets.token_bytes(64), "HS512")])
        keys: list[JwtKey] = []
        issues: list[ConfigIssue] = []
        for index, entry in enumerate(settings.keys):
            try:
                keys.append(JwtKey.from_settings(entry))
            except (ValueError, OSError) as exc:
                issues.append(ConfigIssue(path=f"security.keys.{index}", message=str(exc)))
        if issues:
            raise ConfigError(issues)
        signing = settings.signing_key()
        return cls(keys, signing.kid if signing is not None else None)

    def get(self, kid: str) -> JwtKey | None:
        """The key named ``kid``, or None."""
        return self._keys.get(kid)

    def __iter__(self) -> Iterator[JwtKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def require_signing(self) -> JwtKey:
        """The signing key, or :class:`SecurityError` when this service only verifies."""
        if self.signing is None:
            raise SecurityError(
                "no key can sign tokens: add a key with a secret or a private_key_file "
                "to security.keys"
            )
        return self.signing

    def jwks(self) -> dict[str, Any]:
        """The JWKS document of the public keys (HMAC keys are never published)."""
        if self._jwks is None:
            published = [jwk for key in self._keys.values() if (jwk := key.public_jwk())]
            self._jwks = {"keys": published}
        return self._jwks


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def _check_fits(kid: str, algorithm: str, public: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if algorithm == "RS256":
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError(f"key {kid!r}: RS256 needs an RSA key")
        if public.key_size < MIN_RSA_BITS:
            raise ValueError(
                f"key {kid!r}: RSA keys need at least {MIN_RSA_BITS} bits (got {public.key_size})"
            )
    elif algorithm == "ES256":
        if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(
            public.curve, ec.SECP256R1
        ):
            raise ValueError(f"key {kid!r}: ES256 needs an EC key on P-256")
    elif algorithm == "EdDSA":
        if not isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            raise ValueError(f"key {kid!r}: EdDSA needs an Ed25519 or Ed448 key")
    else:
        raise ValueError(f"key {kid!r}: {algorithm} is not an asymmetric algorithm")
