"""JWT access and refresh tokens: issue, verify, rotate, revoke.

Verification, in order: the size limit (before any decoding), the header
(``kid`` picks the key, and the key's one algorithm is the only one accepted,
so ``none`` and HS-with-a-public-key never verify), the signature, the
registered claims (``exp``/``nbf``/``iat`` with the leeway, ``iss``, ``aud``,
``sub``, ``jti``), the token kind (a refresh token is not an access token),
then the deny-list (``jti`` and refresh family).
"""

from __future__ import annotations

__all__ = ["TokenPair", "TokenService"]

import base64
import binascii
import functools
import json
import logging
import secrets
import time
import types
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from dtpyfw.core._extras import require
from dtpyfw.security._denylist import DenyList, MemoryDenyList, Rotation
from dtpyfw.security._errors import (
    InvalidAudience,
    InvalidIssuer,
    InvalidSignature,
    MalformedToken,
    TokenError,
    TokenExpired,
    TokenNotYetValid,
    TokenRevoked,
)
from dtpyfw.security._keys import JwtKey, KeySet

if TYPE_CHECKING:
    from dtpyfw.security._jwks import JwksClient
    from dtpyfw.security._settings import SecuritySettings

_log = logging.getLogger("dtpyfw.security")

ACCESS_TYP = "at+jwt"  # RFC 9068
REFRESH_TYP = "refresh+jwt"
#: Claims the service writes itself; ``claims=`` may not set them.
RESERVED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "fam", "scope"})
_REQUIRED = ("exp", "iat", "iss", "aud", "sub", "jti")
Kind = Literal["access", "refresh", "any"]


class TokenPair(BaseModel):
    """What a login or a refresh returns (the OAuth 2 token response shape)."""

    model_config = ConfigDict(frozen=True)

    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth 2 token type, not a secret
    expires_in: int
    refresh_expires_in: int


class TokenService:
    """Issue and verify JWTs with a :class:`KeySet` (and optionally a remote JWKS).

    ``verify``/``averify`` return the claims of a valid access token or raise a
    :class:`~dtpyfw.security.TokenError` subclass. ``issue_pair`` starts a refresh
    family; ``refresh`` rotates it: the presented refresh token is spent, and
    presenting it again revokes the family (and every access token it minted).
    """

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str | Iterable[str],
        access_ttl: int = 900,
        refresh_ttl: int = 14 * 24 * 3600,
        leeway: float = 10.0,
        max_token_bytes: int = 8192,
        deny_list: DenyList | None = None,
        jwks: JwksClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jwt = require("jwt", "security")
        self.keys = keys
        self.issuer = issuer
        self.audiences: tuple[str, ...] = (
            (audience,) if isinstance(audience, str) else tuple(audience)
        )
        if not self.audiences:
            raise ValueError("at least one audience is needed")
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        self.deny_list: DenyList = deny_list if deny_list is not None else MemoryDenyList()
        self.jwks_client = jwks
        self._clock = clock
        self._options = {"require": list(_REQUIRED)}

    @classmethod
    def from_settings(
        cls,
        settings: SecuritySettings,
        *,
        deny_list: DenyList | None = None,
        jwks: JwksClient | None = None,
        keys: KeySet | None = None,
    ) -> TokenService:
        """A service with the issuer, audiences, lifetimes and keys of ``security``."""
        return cls(
            keys if keys is not None else KeySet.from_settings(settings),
            issuer=settings.issuer,
            audience=settings.audience,
            access_ttl=settings.access_token_ttl,
            refresh_ttl=settings.refresh_token_ttl,
            leeway=settings.leeway,
            max_token_bytes=settings.max_token_bytes,
            deny_list=deny_list,
            jwks=jwks,
        )

    def __repr__(self) -> str:
        return f"TokenService(issuer={self.issuer!r}, keys={[k.kid for k in self.keys]})"

    # -- issuing ------------------------------------------------------------------
    def issue_access(
        self,
        subject: str,
        *,
        scopes: Iterable[str] = (),
        claims: Mapping[str, Any] | None = None,
        ttl: int | None = None,
        audience: str | None = None,
    ) -> str:
        """A signed access token for ``subject`` (not tied to a refresh family)."""
        return self._encode(
            ACCESS_TYP,
            subject=subject,
            scopes=scopes,
            claims=claims,
            ttl=ttl or self.access_ttl,
            audience=audience,
        )

    def issue_pair(
        self, subject: str, *, scopes: Iterable[str] = (), claims: Mapping[str, Any] | None = None
    ) -> TokenPair:
        """An access token and the first refresh token of a new family (call it at login)."""
        family = _new_id()
        pair, refresh_jti = self._pair(subject, list(scopes), claims, family)
        self.deny_list.start_family(family, refresh_jti, self.refresh_ttl)
        return pair

    async def aissue_pair(
        self, subject: str, *, scopes: Iterable[str] = (), claims: Mapping[str, Any] | None = None
    ) -> TokenPair:
        """Async twin of :meth:`issue_pair`."""
        family = _new_id()
        pair, refresh_jti = self._pair(subject, list(scopes), claims, family)
        await self.deny_list.astart_family(family, refresh_jti, self.refresh_ttl)
        return pair

    # -- verifying ----------------------------------------------------------------
    def verify(self, token: str, *, audience: str | None = None) -> dict[str, Any]:
        """The claims of a valid access token; a :class:`TokenError` otherwise."""
        header = _header(token, self.max_token_bytes)
        claims = self._check(token, header, self._key_for(header), "access", audience)
        if self.deny_list.is_revoked(claims["jti"], _family(claims)):
            raise TokenRevoked("the token was revoked")
        return claims

    async def averify(self, token: str, *, audience: str | None = None) -> dict[str, Any]:
        """Async twin of :meth:`verify` (remote JWKS fetches and Redis calls do not block)."""
        header = _header(token, self.max_token_bytes)
        claims = self._check(token, header, await self._akey_for(header), "access", audience)
        if await self.deny_list.ais_revoked(claims["jti"], _family(claims)):
            raise TokenRevoked("the token was revoked")
        return claims

    # -- refresh rotation ---------------------------------------------------------
    def refresh(self, refresh_token: str) -> TokenPair:
        """A new pair for a current refresh token, which is spent by this call.

        A refresh token that was already spent means a copy is in someone else's
        hands: the whole family is revoked and :class:`TokenRevoked` raised.
        """
        claims, family = self._refresh_claims(refresh_token)
        if self.deny_list.is_revoked(claims["jti"], family):
            raise TokenRevoked("the session was revoked")
        pair, new_jti = self._pair(claims["sub"], _scopes(claims), _custom(claims), family)
        return self._rotated(
            self.deny_list.rotate(family, claims["jti"], new_jti, self.refresh_ttl), pair, claims
        )

    async def arefresh(self, refresh_token: str) -> TokenPair:
        """Async twin of :meth:`refresh`."""
        claims, family = self._refresh_claims(refresh_token)
        if await self.deny_list.ais_revoked(claims["jti"], family):
            raise TokenRevoked("the session was revoked")
        pair, new_jti = self._pair(claims["sub"], _scopes(claims), _custom(claims), family)
        rotation = await self.deny_list.arotate(family, claims["jti"], new_jti, self.refresh_ttl)
        return self._rotated(rotation, pair, claims)

    # -- revoking -----------------------------------------------------------------
    def revoke(self, token: str) -> None:
        """Revoke a valid token of ours: its ``jti`` and, if it has one, its family (logout).

        An expired token is already dead and is accepted silently.
        """
        claims = self._revocable(token)
        if claims is None:
            return
        self.deny_list.revoke(claims["jti"], self._remaining(claims))
        family = _family(claims)
        if family is not None:
            self.deny_list.revoke_family(family, self.refresh_ttl)

    async def arevoke(self, token: str) -> None:
        """Async twin of :meth:`revoke`."""
        claims = self._revocable(token)
        if claims is None:
            return
        await self.deny_list.arevoke(claims["jti"], self._remaining(claims))
        family = _family(claims)
        if family is not None:
            await self.deny_list.arevoke_family(family, self.refresh_ttl)

    def jwks(self) -> dict[str, Any]:
        """The JWKS document of the local public keys (serve it at ``/.well-known/jwks.json``)."""
        return self.keys.jwks()

    # -- internals ----------------------------------------------------------------
    def _pair(
        self,
        subject: str,
        scopes: list[str],
        claims: Mapping[str, Any] | None,
        family: str,
    ) -> tuple[TokenPair, str]:
        access = self._encode(
            ACCESS_TYP,
            subject=subject,
            scopes=scopes,
            claims=claims,
            ttl=self.access_ttl,
            family=family,
        )
        refresh_jti = _new_id()
        refresh = self._encode(
            REFRESH_TYP,
            subject=subject,
            scopes=scopes,
            claims=claims,
            ttl=self.refresh_ttl,
            family=family,
            jti=refresh_jti,
        )
        pair = TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_in=self.access_ttl,
            refresh_expires_in=self.refresh_ttl,
        )
        return pair, refresh_jti

    def _encode(
        self,
        typ: str,
        *,
        subject: str,
        scopes: Iterable[str],
        claims: Mapping[str, Any] | None,
        ttl: int,
        audience: str | None = None,
        family: str | None = None,
        jti: str | None = None,
    ) -> str:
        if not isinstance(subject, str) or not subject:
            raise ValueError("the subject must be a non-empty string")
        extra = dict(claims or {})
        reserved = sorted(RESERVED_CLAIMS & extra.keys())
        if reserved:
            raise ValueError(f"claims= may not set {', '.join(reserved)}; they are written here")
        scope_list = list(scopes)
        for scope in scope_list:
            if not isinstance(scope, str) or not scope or " " in scope:
                raise ValueError(f"a scope is a non-empty string without spaces: {scope!r}")
        key = self.keys.require_signing()
        now = int(self._clock())
        payload: dict[str, Any] = {
            **extra,
            "iss": self.issuer,
            "sub": subject,
            "aud": audience or self.audiences[0],
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": jti or _new_id(),
        }
        if scope_list:
            payload["scope"] = " ".join(scope_list)
        if family is not None:
            payload["fam"] = family
        token: str = self._jwt.encode(
            payload, key.signing_key, algorithm=key.algorithm, headers={"kid": key.kid, "typ": typ}
        )
        return token

    def _key_for(self, header: Mapping[str, Any]) -> JwtKey:
        kid = header.get("kid")
        key = self._local_key(kid)
        if key is None and isinstance(kid, str) and self.jwks_client is not None:
            key = self.jwks_client.get(kid)
        return _pinned(key, header)

    async def _akey_for(self, header: Mapping[str, Any]) -> JwtKey:
        kid = header.get("kid")
        key = self._local_key(kid)
        if key is None and isinstance(kid, str) and self.jwks_client is not None:
            key = await self.jwks_client.aget(kid)
        return _pinned(key, header)

    def _local_key(self, kid: Any) -> JwtKey | None:
        if kid is None:
            if len(self.keys) == 1 and self.jwks_client is None:
                return next(iter(self.keys))
            raise MalformedToken("the token header has no kid")
        if not isinstance(kid, str):
            raise MalformedToken("the token header's kid is not a string")
        return self.keys.get(kid)

    def _check(
        self,
        token: str,
        header: Mapping[str, Any],
        key: JwtKey,
        kind: Kind,
        audience: str | None,
        *,
        verify_exp: bool = True,
    ) -> dict[str, Any]:
        typ = header.get("typ")
        if kind == "access" and typ == REFRESH_TYP:
            raise MalformedToken("a refresh token cannot be used as an access token")
        if kind == "refresh" and typ != REFRESH_TYP:
            raise MalformedToken("this is not a refresh token")
        jwt = self._jwt
        options: dict[str, Any] = self._options
        if not verify_exp:
            options = {**options, "verify_exp": False}
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.verifying_key,
                algorithms=[key.algorithm],
                audience=audience or self.audiences,
                issuer=self.issuer,
                leeway=self.leeway,
                options=options,
            )
        except jwt.PyJWTError as exc:
            raise _translate(jwt, exc) from None
        except (ValueError, TypeError, OverflowError, RecursionError):
            raise MalformedToken("the token could not be decoded") from None
        scope = claims.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise MalformedToken("the scope claim is not a string")
        family = claims.get("fam")
        if family is not None and not isinstance(family, str):
            raise MalformedToken("the fam claim is not a string")
        return claims

    def _refresh_claims(self, refresh_token: str) -> tuple[dict[str, Any], str]:
        header = _header(refresh_token, self.max_token_bytes)
        key = _pinned(self._local_key(header.get("kid")), header)  # only our own keys
        claims = self._check(refresh_token, header, key, "refresh", None)
        family = _family(claims)
        if family is None:
            raise MalformedToken("the refresh token has no family")
        return claims, family

    def _rotated(self, rotation: Rotation, pair: TokenPair, claims: dict[str, Any]) -> TokenPair:
        if rotation is Rotation.ROTATED:
            return pair
        if rotation is Rotation.REUSED:
            _log.warning(
                "refresh token reuse detected: the session is revoked",
                extra={"subject": claims.get("sub"), "family": claims.get("fam")},
            )
            raise TokenRevoked("this refresh token was already used: the session is revoked")
        raise TokenRevoked("the session has ended")

    def _revocable(self, token: str) -> dict[str, Any] | None:
        header = _header(token, self.max_token_bytes)
        key = _pinned(self._local_key(header.get("kid")), header)
        claims = self._check(token, header, key, "any", None, verify_exp=False)
        if self._remaining(claims) <= 0:
            return None
        return claims

    def _remaining(self, claims: Mapping[str, Any]) -> float:
        return float(claims["exp"]) + self.leeway - self._clock()


def _header(token: object, limit: int) -> Mapping[str, Any]:
    """The JOSE header, read after the size and shape checks and before any key is chosen."""
    if not isinstance(token, str):
        raise MalformedToken(f"a token is a string, not {type(token).__name__}")
    if len(token) > limit:
        raise MalformedToken(f"the token is longer than {limit} bytes")
    segment, dot, rest = token.partition(".")
    if not dot or rest.count(".") != 1 or not segment:
        raise MalformedToken("a JWT has three dot-separated parts")
    return _decoded_header(segment)


# Every token a key signs shares one header segment, so this cache almost always
# hits; it is bounded, and holds read-only views of headers under the size limit.
@functools.lru_cache(maxsize=256)
def _decoded_header(segment: str) -> Mapping[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise MalformedToken("the token header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise MalformedToken("the token header is not a JSON object")
    if not isinstance(header.get("alg"), str):
        raise MalformedToken("the token header has no algorithm")
    return types.MappingProxyType(header)


def _pinned(key: JwtKey | None, header: Mapping[str, Any]) -> JwtKey:
    if key is None:
        raise InvalidSignature("the token was signed with an unknown key")
    if header["alg"] != key.algorithm:
        raise InvalidSignature(f"algorithm {header['alg']!r} is not accepted for this key")
    return key


def _translate(jwt: Any, exc: Exception) -> TokenError:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        if exc.claim == "aud":
            return InvalidAudience("the token has no audience")
        if exc.claim == "iss":
            return InvalidIssuer("the token has no issuer")
        return MalformedToken(f"the token lacks the {exc.claim!r} claim")
    translations: list[tuple[Any, Callable[[], TokenError]]] = [
        (jwt.ExpiredSignatureError, lambda: TokenExpired("the token has expired")),
        (jwt.ImmatureSignatureError, lambda: TokenNotYetValid("the token is not valid yet")),
        (jwt.InvalidAudienceError, lambda: InvalidAudience("the token is not for this audience")),
        (jwt.InvalidIssuerError, lambda: InvalidIssuer("the token comes from another issuer")),
        (
            (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError, jwt.InvalidKeyError),
            lambda: InvalidSignature("the token signature does not verify"),
        ),
    ]
    for kinds, make in translations:
        if isinstance(exc, kinds):
            return make()
    return MalformedToken("the token is malformed")


def _family(claims: Mapping[str, Any]) -> str | None:
    family = claims.get("fam")
    return family if isinstance(family, str) else None


def _scopes(claims: Mapping[str, Any]) -> list[str]:
    scope = claims.get("scope")
    return scope.split() if isinstance(scope, str) else []


def _custom(claims: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k not in RESERVED_CLAIMS}


def _new_id() -> str:
    return secrets.token_urlsafe(16)
