"""Authentication and authorisation dependencies: bearer JWTs and API keys.

::

    @router.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"subject": user.subject}

    @router.delete("/notes/{id}", dependencies=[Depends(require_scopes("notes:write"))])
    async def delete_note(...): ...

401 means "who are you?": no credentials, or credentials that do not verify.
403 means "I know who you are, and no": a scope, role or permission is missing.
Both answer with problem details and an RFC 6750 ``WWW-Authenticate``
challenge: ``Bearer realm="svc"`` when nothing was presented,
``error="invalid_token"`` for a rejected token, ``error="insufficient_scope",
scope="..."`` for a missing scope.

The token service and API keys come from ``container.security`` of the app
that ``create_app`` built, unless given to :func:`authenticate` explicitly.
"""

from __future__ import annotations

__all__ = [
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
]

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.security.base import SecurityBase

from dtpyfw.security._apikeys import ApiKeyProvider, ApiKeyRecord
from dtpyfw.security._errors import (
    InsufficientScope,
    InvalidCredentials,
    MalformedToken,
    NotAuthenticated,
    PermissionDenied,
    SecurityError,
)
from dtpyfw.security._tokens import TokenService

Method = Literal["bearer", "api_key"]
_QUOTABLE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")  # RFC 6750 3: no '"' nor '\'


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's subject (or the API key's name) and what it may do.

    ``scopes`` come from the ``scope`` claim (space-separated, RFC 9068) or a
    ``scp`` list; ``roles`` and ``permissions`` from the claims of those names.
    ``claims`` holds every claim of the token (empty for an API key).
    """

    subject: str
    method: Method
    scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)
    token_id: str | None = None

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Principal:
        """The principal of verified token claims; wrongly typed claims are MalformedToken."""
        scope = claims.get("scope")
        scopes = scope.split() if isinstance(scope, str) else _strings(claims, "scp")
        return cls(
            subject=str(claims["sub"]),
            method="bearer",
            scopes=frozenset(scopes),
            roles=frozenset(_strings(claims, "roles")),
            permissions=frozenset(_strings(claims, "permissions")),
            claims=dict(claims),
            token_id=claims.get("jti"),
        )

    @classmethod
    def from_api_key(cls, record: ApiKeyRecord) -> Principal:
        """The principal of a matched API key: its name, with the key's scopes."""
        return cls(subject=record.name, method="api_key", scopes=frozenset(record.scopes))


Authenticator = Callable[..., Awaitable[Principal]]


def authenticate(
    *,
    bearer: bool = True,
    api_key: bool = False,
    api_key_header: str = "X-API-Key",
    realm: str | None = None,
    token_service: TokenService | Callable[[], TokenService] | None = None,
    api_keys: ApiKeyProvider | Callable[[], ApiKeyProvider] | None = None,
) -> Authenticator:
    """A dependency that returns the :class:`Principal` or raises 401.

    ``bearer`` accepts ``Authorization: Bearer <jwt>``; ``api_key`` accepts the
    ``api_key_header``. With both, a request may use either (a bearer token is
    tried first). ``realm`` defaults to ``security.realm``, then the service name.
    The schemes are declared in the OpenAPI document.
    """
    if not (bearer or api_key):
        raise ValueError("authenticate() needs bearer=True, api_key=True, or both")
    auth = HeaderAuthenticator(
        bearer=bearer,
        api_key=api_key,
        api_key_header=api_key_header,
        realm=realm,
        token_service=token_service,
        api_keys=api_keys,
    )
    if not (bearer and api_key):
        return auth
    # One security object documents one scheme: the API key's is declared by a
    # second, documentation-only dependency (the authenticator reads both headers).
    declared_key = APIKeyHeader(name=api_key_header, auto_error=False)

    async def either(
        principal: Principal = Depends(auth), _key: str | None = Depends(declared_key)
    ) -> Principal:
        return principal

    return either


class HeaderAuthenticator(SecurityBase):
    """The dependency :func:`authenticate` builds: reads the headers, verifies, returns.

    A ``SecurityBase`` so that FastAPI documents its scheme in OpenAPI while
    resolving it as one dependency (no sub-dependencies on the hot path).
    """

    def __init__(
        self,
        *,
        bearer: bool,
        api_key: bool,
        api_key_header: str,
        realm: str | None,
        token_service: TokenService | Callable[[], TokenService] | None,
        api_keys: ApiKeyProvider | Callable[[], ApiKeyProvider] | None,
    ) -> None:
        if bearer:
            self.model: Any = HTTPBearerModel()
            self.scheme_name = "HTTPBearer"
        else:
            self.model = APIKey(**{"in": APIKeyIn.header}, name=api_key_header)
            self.scheme_name = "APIKeyHeader"
        self.bearer = bearer
        self.api_key_header = api_key_header.lower() if api_key else None
        self.realm = realm
        self.schemes = (["Bearer"] if bearer else []) + (["ApiKey"] if api_key else [])
        self._token_service = token_service
        self._api_keys = api_keys

    async def __call__(self, request: Request) -> Principal:
        headers = request.headers
        try:
            token = _bearer_token(headers.get("authorization")) if self.bearer else None
            if token is not None:
                service = _resolve(self._token_service, request, "token_service")
                principal = Principal.from_claims(await service.averify(token))
            elif self.api_key_header is not None and (key := headers.get(self.api_key_header)):
                provider = _resolve(self._api_keys, request, "api_keys")
                record = await provider.averify(key)
                if record is None:
                    raise InvalidCredentials("the API key is not valid")
                principal = Principal.from_api_key(record)
            else:
                raise NotAuthenticated("credentials are required")
        except SecurityError as exc:
            where = self.realm or _default_realm(request)
            exc.http_headers["WWW-Authenticate"] = challenge(exc, where, self.schemes)
            raise
        state = request.state
        state.principal = principal
        state.auth_challenge = (self.realm, self.schemes)
        return principal


#: ``Authorization: Bearer <jwt>`` only.
bearer_user = authenticate()
#: The API key header only.
api_key_user = authenticate(bearer=False, api_key=True)
#: The bearer token's principal: ``async def me(user: CurrentUser)``.
CurrentUser = Annotated[Principal, Depends(bearer_user)]


def require_scopes(*scopes: str, auth: Authenticator = bearer_user) -> Authenticator:
    """A dependency: the principal of ``auth``, which must hold every scope (else 403)."""
    return _requirement(auth, scopes, lambda p: p.scopes, lambda missing: InsufficientScope(scopes))


def require_roles(*roles: str, auth: Authenticator = bearer_user) -> Authenticator:
    """A dependency: the principal of ``auth``, which must hold every role (else 403)."""
    return _requirement(
        auth,
        roles,
        lambda p: p.roles,
        lambda missing: PermissionDenied(f"this needs the role(s): {' '.join(missing)}"),
    )


def require_permissions(*permissions: str, auth: Authenticator = bearer_user) -> Authenticator:
    """A dependency: the principal of ``auth``, which must hold every permission (else 403)."""
    return _requirement(
        auth,
        permissions,
        lambda p: p.permissions,
        lambda missing: PermissionDenied(f"this needs the permission(s): {' '.join(missing)}"),
    )


def jwks_router(path: str = "/.well-known/jwks.json", *, max_age: int = 300) -> APIRouter:
    """A router publishing the token service's public keys (RFC 7517 JWKS)."""
    router = APIRouter(tags=["security"])

    @router.get(path, include_in_schema=False)
    async def jwks(request: Request) -> JSONResponse:
        service = _resolve(None, request, "token_service")
        return JSONResponse(
            service.jwks(),
            media_type="application/jwk-set+json",
            headers={"Cache-Control": f"public, max-age={max_age}"},
        )

    return router


def challenge(exc: SecurityError, realm: str, schemes: Iterable[str] = ("Bearer",)) -> str:
    """The ``WWW-Authenticate`` value for ``exc`` (RFC 6750 section 3)."""
    params = [f'realm="{_quote(realm)}"']
    if exc.oauth_error is not None and not isinstance(exc, NotAuthenticated):
        params.append(f'error="{exc.oauth_error}"')
        if isinstance(exc, InsufficientScope):
            params.append(f'scope="{_quote(" ".join(exc.scopes))}"')
        else:
            params.append(f'error_description="{_quote(str(exc))}"')
    return ", ".join(f"{scheme} {', '.join(params)}" for scheme in schemes)


def _requirement(
    auth: Authenticator,
    needed: tuple[str, ...],
    held: Callable[[Principal], frozenset[str]],
    denial: Callable[[list[str]], SecurityError],
) -> Authenticator:
    if not needed:
        raise ValueError("name at least one requirement")
    wanted = frozenset(needed)

    async def dependency(request: Request, principal: Principal = Depends(auth)) -> Principal:
        missing = wanted - held(principal)
        if missing:
            exc = denial(sorted(missing))
            realm, schemes = getattr(request.state, "auth_challenge", (None, ["Bearer"]))
            where = realm or _default_realm(request)
            exc.http_headers["WWW-Authenticate"] = challenge(exc, where, schemes)
            raise exc
        return principal

    return dependency


def _resolve(explicit: Any, request: Request, provider: str) -> Any:
    if explicit is not None:
        return explicit() if callable(explicit) else explicit
    container = getattr(request.app.state, "container", None)
    if container is None:
        raise SecurityError(
            f"no {provider}: build the app with create_app(container) or pass {provider}= "
            "to authenticate()"
        )
    return getattr(container.security, provider)()


def _bearer_token(authorization: str | None) -> str | None:
    """The credentials of ``Authorization: Bearer <token>`` (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return None
    return credentials


def _default_realm(request: Request) -> str:
    container = getattr(request.app.state, "container", None)
    if container is None:
        return "api"
    settings = container.settings()
    security = getattr(settings, "security", None)
    if security is not None and security.realm:
        return str(security.realm)
    return str(settings.service.name)


def _strings(claims: Mapping[str, Any], name: str) -> list[str]:
    value = claims.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedToken(f"the {name} claim is not a list of strings")
    return value


def _quote(text: str) -> str:
    return _QUOTABLE.sub("", text)
