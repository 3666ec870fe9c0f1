"""Passwords (bcrypt), tokens (JWT), API keys and a revocation deny-list.

Resolve ``password_hasher``, ``token_service`` and ``api_keys`` from
:class:`SecurityContainer` (``container.security`` in a ``ServiceContainer``
with a ``security:`` section), or build them directly::

    hasher = PasswordHasher(rounds=12)
    stored = hasher.hash("correct horse battery staple")
    hasher.verify("correct horse battery staple", stored)   # True

    tokens = TokenService(KeySet([JwtKey.hmac("k1", secret)]), issuer="me", audience="api")
    pair = tokens.issue_pair("user-42", scopes=["notes:read"])
    claims = tokens.verify(pair.access_token)

Importing this package needs no optional extra; hashing and tokens need the
``security`` extra (``pip install 'dtpyfw[security]'``: bcrypt and PyJWT).
"""

from dtpyfw.security._apikeys import (
    ApiKeyProvider,
    ApiKeyRecord,
    ApiKeys,
    generate_api_key,
    hash_api_key,
)
from dtpyfw.security._container import SecurityContainer
from dtpyfw.security._denylist import (
    DenyList,
    MemoryDenyList,
    RedisDenyList,
    Rotation,
    create_deny_list,
)
from dtpyfw.security._errors import (
    AuthenticationError,
    InsufficientScope,
    InvalidAudience,
    InvalidCredentials,
    InvalidIssuer,
    InvalidSignature,
    MalformedToken,
    NotAuthenticated,
    PasswordError,
    PermissionDenied,
    SecurityError,
    TokenError,
    TokenExpired,
    TokenNotYetValid,
    TokenRevoked,
)
from dtpyfw.security._jwks import JwksClient
from dtpyfw.security._keys import JwtKey, KeySet
from dtpyfw.security._passwords import PasswordHasher
from dtpyfw.security._settings import ApiKeySettings, JwtKeySettings, SecuritySettings
from dtpyfw.security._tokens import TokenPair, TokenService

__all__ = [
    "ApiKeyProvider",
    "ApiKeyRecord",
    "ApiKeySettings",
    "ApiKeys",
    "AuthenticationError",
    "DenyList",
    "InsufficientScope",
    "InvalidAudience",
    "InvalidCredentials",
    "InvalidIssuer",
    "InvalidSignature",
    "JwksClient",
    "JwtKey",
    "JwtKeySettings",
    "KeySet",
    "MalformedToken",
    "MemoryDenyList",
    "NotAuthenticated",
    "PasswordError",
    "PasswordHasher",
    "PermissionDenied",
    "RedisDenyList",
    "Rotation",
    "SecurityContainer",
    "SecurityError",
    "SecuritySettings",
    "TokenError",
    "TokenExpired",
    "TokenNotYetValid",
    "TokenPair",
    "TokenRevoked",
    "TokenService",
    "create_deny_list",
    "generate_api_key",
    "hash_api_key",
]
