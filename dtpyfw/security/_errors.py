"""The security exception tree, rooted at :class:`~dtpyfw.core.errors.DtpyfwError`::

    DtpyfwError
    └── SecurityError              misconfiguration, e.g. no signing key (500)
        ├── PasswordError          an empty or non-string password (400)
        ├── AuthenticationError    who is calling is not established (401)
        │   ├── NotAuthenticated   no credentials were presented
        │   ├── InvalidCredentials a wrong password or an unknown API key
        │   └── TokenError         a token was rejected (RFC 6750 ``invalid_token``)
        │       ├── TokenExpired       ``exp`` has passed (beyond the leeway)
        │       ├── TokenNotYetValid   ``nbf`` / ``iat`` lie in the future
        │       ├── InvalidAudience    ``aud`` is missing or not ours
        │       ├── InvalidIssuer      ``iss`` is missing or not ours
        │       ├── InvalidSignature   bad signature, unknown ``kid``, algorithm not
        │       │                      allowed for the key (``none``, HS with a public key)
        │       ├── MalformedToken     not a JWT, too large, bad base64/JSON, a claim of
        │       │                      the wrong type, a refresh token used as access
        │       └── TokenRevoked       a deny-listed ``jti``, a revoked family, or a
        │                              refresh token presented a second time
        └── PermissionDenied       authenticated, but not allowed (403)
            └── InsufficientScope  a required scope is missing (``insufficient_scope``)

Messages are written for the caller: they never contain the token, the key or
the password, so the API layer can put them in a problem document as they are.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "InsufficientScope",
    "InvalidAudience",
    "InvalidCredentials",
    "InvalidIssuer",
    "InvalidSignature",
    "MalformedToken",
    "NotAuthenticated",
    "PasswordError",
    "PermissionDenied",
    "SecurityError",
    "TokenError",
    "TokenExpired",
    "TokenNotYetValid",
    "TokenRevoked",
]

from collections.abc import Iterable

from dtpyfw.core.errors import DtpyfwError


class SecurityError(DtpyfwError):
    """Root of the security subtree; raised as is for misconfiguration."""

    http_status = 500
    problem_type = "security-error"
    #: The RFC 6750 ``error`` code of the ``WWW-Authenticate`` challenge, if any.
    oauth_error: str | None = None

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        #: Headers the HTTP layer sends with the problem (the ``WWW-Authenticate``
        #: challenge); the API's auth dependencies fill it in.
        self.http_headers: dict[str, str] = {}


class PasswordError(SecurityError, ValueError):
    """The password is empty or not a string."""

    http_status = 400
    problem_type = "invalid-password"


class AuthenticationError(SecurityError):
    """The caller is not authenticated: answer 401 with a ``WWW-Authenticate`` challenge."""

    http_status = 401
    problem_type = "unauthorized"


class NotAuthenticated(AuthenticationError):
    """No credentials came with the request (RFC 6750 sends no error code then)."""


class InvalidCredentials(AuthenticationError):
    """A wrong user name or password, or an API key that matches none."""


class TokenError(AuthenticationError):
    """A token was rejected."""

    problem_type = "invalid-token"
    oauth_error = "invalid_token"


class TokenExpired(TokenError):
    """The token's ``exp`` has passed, leeway included."""


class TokenNotYetValid(TokenError):
    """The token's ``nbf`` or ``iat`` lies in the future, leeway included."""


class InvalidAudience(TokenError):
    """The token's ``aud`` is missing or names another audience."""


class InvalidIssuer(TokenError):
    """The token's ``iss`` is missing or names another issuer."""


class InvalidSignature(TokenError):
    """The signature does not verify, the ``kid`` is unknown, or the algorithm is refused."""


class MalformedToken(TokenError):
    """The token is not a well-formed JWT of the expected kind and size."""


class TokenRevoked(TokenError):
    """The token (or its refresh family) was revoked, or a rotated refresh token came back."""


class PermissionDenied(SecurityError):
    """The caller is authenticated but not allowed: answer 403."""

    http_status = 403
    problem_type = "forbidden"
    oauth_error = "insufficient_scope"


class InsufficientScope(PermissionDenied):
    """A scope the endpoint requires is missing from the token; ``scopes`` lists them all."""

    def __init__(self, scopes: Iterable[str], message: str | None = None) -> None:
        self.scopes: tuple[str, ...] = tuple(scopes)
        super().__init__(message or f"this needs the scope(s): {' '.join(self.scopes)}")
