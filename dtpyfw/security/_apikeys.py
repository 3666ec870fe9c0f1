"""API keys: high-entropy random strings, stored only as their SHA-256.

A key has 256 bits of entropy, so a fast hash is enough (there is nothing to
brute-force, unlike a password); the stored digest is useless to a thief of
the configuration. Presented keys are hashed and compared with
``hmac.compare_digest`` against every stored digest, so the comparison takes
the same time wherever the first differing byte lies.
"""

from __future__ import annotations

__all__ = ["ApiKeyProvider", "ApiKeyRecord", "ApiKeys", "generate_api_key", "hash_api_key"]

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from dtpyfw.security._settings import SecuritySettings

#: Longer presented keys are refused before hashing.
MAX_API_KEY_LENGTH = 512


def hash_api_key(key: str) -> str:
    """The lower-case hex SHA-256 of ``key``: what ``security.api_keys[].sha256`` holds."""
    if not isinstance(key, str) or not key:
        raise ValueError("an API key is a non-empty string")
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def generate_api_key(prefix: str = "dtpyfw_") -> tuple[str, str]:
    """A new key (``prefix`` + 43 url-safe characters, 256 bits) and its SHA-256 to store.

    Show the key to its holder once; keep only the digest.
    """
    key = f"{prefix}{secrets.token_urlsafe(32)}"
    return key, hash_api_key(key)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A stored key: who holds it, its digest and the scopes it grants."""

    name: str
    sha256: str
    scopes: tuple[str, ...] = ()


@runtime_checkable
class ApiKeyProvider(Protocol):
    """Where keys come from when they are not in the settings (say, a database table)."""

    async def averify(self, key: str) -> ApiKeyRecord | None:
        """The record whose digest matches ``key``, or None."""


class ApiKeys:
    """The keys of ``security.api_keys``; satisfies :class:`ApiKeyProvider`."""

    def __init__(self, records: Iterable[ApiKeyRecord]) -> None:
        self._records = tuple(records)

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> ApiKeys:
        """The keys listed in the ``security`` section."""
        return cls(
            ApiKeyRecord(name=k.name, sha256=k.sha256, scopes=tuple(k.scopes))
            for k in settings.api_keys
        )

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"ApiKeys(names={[r.name for r in self._records]})"

    def verify(self, key: str) -> ApiKeyRecord | None:
        """The record for ``key``, or None; every stored digest is compared in constant time."""
        if not isinstance(key, str) or not key or len(key) > MAX_API_KEY_LENGTH:
            return None
        presented = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest().encode()
        found: ApiKeyRecord | None = None
        for record in self._records:
            # No early exit: the time spent does not depend on which record matched.
            if hmac.compare_digest(presented, record.sha256.encode("ascii")):
                found = record
        return found

    async def averify(self, key: str) -> ApiKeyRecord | None:
        """Async twin of :meth:`verify` (no I/O: it answers at once)."""
        return self.verify(key)
