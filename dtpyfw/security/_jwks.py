"""Verification keys fetched from a remote JWKS URL, cached, refreshed with a rate limit."""

from __future__ import annotations

__all__ = ["JwksClient"]

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import httpx

from dtpyfw.core.errors import HttpError
from dtpyfw.security._keys import ASYMMETRIC_ALGORITHMS, JwtKey

if TYPE_CHECKING:
    from dtpyfw.security._settings import SecuritySettings

_log = logging.getLogger("dtpyfw.security")
MAX_JWKS_BYTES = 1 << 20


class JwksClient:
    """The public keys published at ``url``, by ``kid``.

    The document is fetched on first use and again once ``cache_ttl`` seconds
    have passed. A ``kid`` the cached document does not know triggers one early
    refresh, at most once per ``refresh_interval`` seconds, so a stream of
    tokens with made-up ``kid`` values cannot turn into a stream of requests.
    When a refresh fails, the keys already cached keep serving.
    Only asymmetric keys (``algorithms``) are taken; ``oct`` keys never are.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_ttl: float = 300.0,
        refresh_interval: float = 30.0,
        timeout: float = 5.0,
        algorithms: Iterable[str] = ASYMMETRIC_ALGORITHMS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.cache_ttl = cache_ttl
        self.refresh_interval = refresh_interval
        self.timeout = timeout
        self.algorithms = frozenset(algorithms)
        self._clock = clock
        self._keys: dict[str, JwtKey] = {}
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> JwksClient | None:
        """A client for ``security.jwks_url``, or None when it is not set."""
        if settings.jwks_url is None:
            return None
        return cls(
            settings.jwks_url,
            cache_ttl=settings.jwks_cache_ttl,
            refresh_interval=settings.jwks_refresh_interval,
            timeout=settings.jwks_timeout,
        )

    def __repr__(self) -> str:
        return f"JwksClient({self.url!r}, keys={sorted(self._keys)})"

    def get(self, kid: str) -> JwtKey | None:
        """The key named ``kid`` (fetching when needed), or None when the JWKS lacks it."""
        action = self._plan(kid)
        if action is not None:
            with self._lock:
                action = self._plan(kid)  # another thread may have fetched meanwhile
                if action is not None:
                    self._mark_attempt()
                    self._store(self._fetch_sync(), action)
        return self._keys.get(kid)

    async def aget(self, kid: str) -> JwtKey | None:
        """Async twin of :meth:`get` (the fetch does not block the event loop)."""
        action = self._plan(kid)
        if action is not None:
            # Marked before the await: concurrent requests see the attempt and wait
            # for the next interval instead of fetching the same document again.
            self._mark_attempt()
            self._store(await self._fetch_async(), action)
        return self._keys.get(kid)

    def _plan(self, kid: str) -> str | None:
        """Why a fetch is due now ("initial", "expired", "unknown-kid"), or None."""
        now = self._clock()
        recently_tried = (
            self._last_attempt is not None and now - self._last_attempt < self.refresh_interval
        )
        if self._fetched_at is None:
            if recently_tried:
                raise HttpError(
                    f"the JWKS at {self.url} could not be fetched; the next attempt is at most "
                    f"{self.refresh_interval:g}s away"
                )
            return "initial"
        if now - self._fetched_at >= self.cache_ttl:
            return None if recently_tried else "expired"  # stale keys serve meanwhile
        if kid not in self._keys and not recently_tried:
            return "unknown-kid"
        return None

    def _mark_attempt(self) -> None:
        self._last_attempt = self._clock()

    def _store(self, document: dict[str, Any] | None, reason: str) -> None:
        if document is None:
            return
        keys: dict[str, JwtKey] = {}
        for entry in document.get("keys", []) if isinstance(document.get("keys"), list) else []:
            if not isinstance(entry, dict):
                continue
            try:
                key = JwtKey.from_jwk(entry, algorithms=self.algorithms)
            except ValueError as exc:
                _log.warning("JWKS key skipped: %s", exc, extra={"jwks_url": self.url})
                continue
            keys[key.kid] = key
        self._keys = keys
        self._fetched_at = self._clock()
        _log.debug(
            "JWKS fetched", extra={"jwks_url": self.url, "keys": len(keys), "reason": reason}
        )

    def _fetch_sync(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(self.url, timeout=self.timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            self._failed(exc)
            return None
        return self._parse(response)

    async def _fetch_async(self) -> dict[str, Any] | None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
                response = await client.get(self.url)
        except httpx.HTTPError as exc:
            self._failed(exc)
            return None
        return self._parse(response)

    def _parse(self, response: httpx.Response) -> dict[str, Any] | None:
        problem: Exception | None = None
        document: Any = None
        if response.status_code != 200 or len(response.content) > MAX_JWKS_BYTES:
            problem = HttpError(f"JWKS answered {response.status_code}")
        else:
            try:
                document = response.json()
            except ValueError as exc:
                problem = exc
            if problem is None and not isinstance(document, dict):
                problem = HttpError("JWKS is not a JSON object")
        if problem is not None:
            self._failed(problem)
            return None
        return dict(document)

    def _failed(self, exc: Exception) -> None:
        """Raise when nothing is cached yet; otherwise log and keep serving the cache."""
        if self._fetched_at is None:
            raise HttpError(
                f"could not fetch the JWKS at {self.url}: {type(exc).__name__}"
            ) from exc
        _log.warning(
            "JWKS refresh failed; keeping the cached keys",
            extra={"jwks_url": self.url, "error": type(exc).__name__},
        )
