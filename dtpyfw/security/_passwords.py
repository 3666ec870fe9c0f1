"""Password hashing on bcrypt, with every password pre-hashed by HMAC-SHA256.

bcrypt reads at most 72 bytes (bcrypt 5 refuses longer input) and stops at a
NUL byte. So every password, short or long, is first normalised (Unicode NFKC,
as NIST SP 800-63B advises), then HMAC-SHA256'd with the pepper (or a fixed
key when there is none), then base64-encoded: 44 ASCII bytes, never a NUL,
always under the limit. Two different passwords of any length reach bcrypt as
two different inputs. Doing it for *all* passwords keeps one code path and one
hash format; the price is that these hashes verify only through
:class:`PasswordHasher`, not with plain ``bcrypt.checkpw``.
"""

from __future__ import annotations

__all__ = ["PasswordHasher"]

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import unicodedata
from typing import TYPE_CHECKING

from pydantic import SecretStr

from dtpyfw.core._extras import require
from dtpyfw.security._errors import PasswordError
from dtpyfw.security._settings import MIN_BCRYPT_ROUNDS

if TYPE_CHECKING:
    from dtpyfw.security._settings import SecuritySettings

_log = logging.getLogger("dtpyfw.security")
# The HMAC key when no pepper is configured: domain separation, not a secret.
_NO_PEPPER = b"dtpyfw.security.password.v1"
_BCRYPT_HASH = re.compile(rb"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
MAX_BCRYPT_ROUNDS = 20


class PasswordHasher:
    """Hash and verify passwords with bcrypt at ``rounds`` (default 12, at least 10)."""

    def __init__(self, rounds: int = 12, *, pepper: str | bytes | SecretStr | None = None) -> None:
        if isinstance(rounds, bool) or not isinstance(rounds, int):
            raise TypeError(f"rounds must be an int, not {type(rounds).__name__}")
        if not MIN_BCRYPT_ROUNDS <= rounds <= MAX_BCRYPT_ROUNDS:
            raise ValueError(
                f"bcrypt rounds must be between {MIN_BCRYPT_ROUNDS} and {MAX_BCRYPT_ROUNDS}, "
                f"got {rounds}"
            )
        self.rounds = rounds
        if isinstance(pepper, SecretStr):
            pepper = pepper.get_secret_value()
        if isinstance(pepper, str):
            pepper = pepper.encode("utf-8")
        if pepper is not None and not pepper:
            raise ValueError("the pepper must not be empty (leave it unset instead)")
        self._key = pepper or _NO_PEPPER
        self._dummy: bytes | None = None

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> PasswordHasher:
        """A hasher with ``bcrypt_rounds`` and ``pepper`` from the ``security`` section."""
        return cls(settings.bcrypt_rounds, pepper=settings.pepper)

    def __repr__(self) -> str:
        return f"PasswordHasher(rounds={self.rounds})"

    def hash(self, password: str) -> str:
        """A new bcrypt hash (``$2b$<rounds>$...``, 60 ASCII characters) of ``password``."""
        bcrypt = require("bcrypt", "security")
        digest = self._prehash(password)
        hashed: bytes = bcrypt.hashpw(digest, bcrypt.gensalt(rounds=self.rounds))
        return hashed.decode("ascii")

    def verify(self, password: str, stored_hash: str | bytes | None) -> bool:
        """Whether ``password`` matches ``stored_hash``, compared in constant time.

        A malformed stored hash logs a warning and gives False; it never raises.
        ``stored_hash=None`` (say, an unknown user) still spends one bcrypt
        computation, so a login cannot tell unknown users from wrong passwords by
        timing.
        """
        bcrypt = require("bcrypt", "security")
        digest = self._prehash(password)
        if stored_hash is None:
            bcrypt.checkpw(digest, self._dummy_hash())
            return False
        stored = _as_bytes(stored_hash)
        if stored is None or not _BCRYPT_HASH.match(stored):
            _log.warning(
                "stored password hash is malformed; treating it as a mismatch",
                extra={"hash_type": type(stored_hash).__name__},
            )
            return False
        try:
            return bool(bcrypt.checkpw(digest, stored))
        except ValueError:
            _log.warning("stored password hash is malformed; treating it as a mismatch")
            return False

    def needs_rehash(self, stored_hash: str | bytes) -> bool:
        """True when ``stored_hash`` used fewer rounds than now, or is not a bcrypt ``2b`` hash.

        Call it after a successful :meth:`verify` and store :meth:`hash` of the
        password again when it says so: costs are raised without a migration.
        """
        stored = _as_bytes(stored_hash)
        match = _BCRYPT_HASH.match(stored) if stored is not None else None
        if match is None or not stored or stored[1:3] != b"2b":
            return True
        return int(match.group(1)) < self.rounds

    async def ahash(self, password: str) -> str:
        """:meth:`hash` in a worker thread: the event loop keeps serving meanwhile."""
        self._prehash(password)  # invalid input fails here, before the thread hop
        return await asyncio.to_thread(self.hash, password)

    async def averify(self, password: str, stored_hash: str | bytes | None) -> bool:
        """:meth:`verify` in a worker thread."""
        self._prehash(password)
        return await asyncio.to_thread(self.verify, password, stored_hash)

    def _prehash(self, password: str) -> bytes:
        if not isinstance(password, str):
            raise PasswordError(f"a password must be a str, not {type(password).__name__}")
        if not password:
            raise PasswordError("the password is empty")
        normalised = unicodedata.normalize("NFKC", password).encode("utf-8", "surrogatepass")
        return base64.b64encode(hmac.new(self._key, normalised, hashlib.sha256).digest())

    def _dummy_hash(self) -> bytes:
        if self._dummy is None:
            bcrypt = require("bcrypt", "security")
            self._dummy = bcrypt.hashpw(b"dtpyfw-dummy", bcrypt.gensalt(rounds=self.rounds))
        return self._dummy


def _as_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("ascii")
        except UnicodeEncodeError:
            return None
    return None
