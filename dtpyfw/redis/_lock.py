"""Distributed locks in Redis that a holder whose lock expired cannot break.

``locks = container.redis.locks()``, then::

    with locks("reports:nightly", ttl=30):
        ...
    async with locks("reports:nightly", ttl=30):
        ...

Acquiring is ``SET <namespace>:<name> <token> NX PX <ttl>`` with a random
token, retried until ``timeout`` (then :class:`LockTimeout`). Releasing and
extending run a Lua script that checks the token first: a holder whose lock
expired (and was perhaps taken by someone else) never deletes or extends the
new holder's lock. Such a holder gets :class:`LockLost` from ``release()``
(or when its ``with`` block ends without an exception of its own), because
its critical section was not exclusive. ``extend()`` pushes the expiry out
for long work.
"""

from __future__ import annotations

__all__ = ["Lock", "LockLost", "LockTimeout", "Locks"]

import asyncio
import inspect
import secrets
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dtpyfw.core._extras import require
from dtpyfw.core.errors import CacheError

if TYPE_CHECKING:
    import redis
    import redis.asyncio

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RETRY_FIRST, _RETRY_MAX = 0.005, 0.1


class LockTimeout(CacheError):
    """The lock was not acquired within the timeout: someone else holds it."""


class LockLost(CacheError):
    """The lock expired before it was released or extended; the work was not exclusive."""


class Locks:
    """Makes :class:`Lock` objects; ``client``/``async_client`` as for ``Cache``."""

    def __init__(
        self,
        client: Any = None,
        async_client: Any = None,
        *,
        namespace: str = "lock",
        default_ttl: float = 30.0,
        default_timeout: float | None = 10.0,
    ) -> None:
        self.namespace = namespace
        self.default_ttl = default_ttl
        self.default_timeout = default_timeout
        self._client_source = client
        self._async_client_source = async_client
        self._client: redis.Redis | None = None
        self._async_client: redis.asyncio.Redis | None = None
        self._guard = threading.Lock()

    def __call__(self, name: str, *, ttl: float | None = None, timeout: float | None = -1) -> Lock:
        """A lock on ``name`` held for at most ``ttl`` seconds.

        ``timeout`` is how long acquiring waits (None waits forever, 0 tries once;
        the default is ``default_timeout``).
        """
        if not name:
            raise ValueError("a lock needs a non-empty name")
        return Lock(
            self,
            f"{self.namespace}:{name}",
            ttl=self.default_ttl if ttl is None else ttl,
            timeout=self.default_timeout if timeout == -1 else timeout,
        )

    def _sync(self) -> redis.Redis:
        client = self._client
        if client is None:
            source = self._client_source
            if source is None:
                raise CacheError("these Locks have no sync Redis client: pass client=...")
            client = self._client = source() if callable(source) else source
        return client

    async def _async(self) -> redis.asyncio.Redis:
        client = self._async_client
        if client is None:
            source = self._async_client_source
            if source is None:
                raise CacheError("these Locks have no async Redis client: pass async_client=...")
            value = source() if callable(source) else source
            while _pending(value):
                value = await value
            with self._guard:
                client = self._async_client = self._async_client or value
        return client


class Lock:
    """One distributed lock; a context manager for ``with`` and ``async with``."""

    def __init__(self, locks: Locks, key: str, *, ttl: float, timeout: float | None) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, not {ttl!r}")
        self.key = key
        self.ttl = ttl
        self.timeout = timeout
        self._locks = locks
        self._token: str | None = None

    def __repr__(self) -> str:
        state = "held" if self._token else "free"
        return f"Lock({self.key!r}, ttl={self.ttl:g}, {state})"

    @property
    def held(self) -> bool:
        """True between a successful acquire and the release (expiry is not checked)."""
        return self._token is not None

    # -- sync ------------------------------------------------------------------------
    def acquire(self, *, timeout: float | None = -1) -> bool:
        """Try to take the lock until ``timeout`` (default: the lock's); True when taken."""
        client = self._locks._sync()
        token = secrets.token_hex(16)
        deadline = _deadline(self.timeout if timeout == -1 else timeout)
        delay = _RETRY_FIRST
        while True:
            if self._command(lambda: client.set(self.key, token, nx=True, px=self._ttl_ms())):
                self._token = token
                return True
            if deadline is not None and time.monotonic() + delay > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    def release(self) -> None:
        """Release the lock; LockLost if it had expired (it is not deleted then)."""
        token = self._take_token()
        client = self._locks._sync()
        released = self._command(lambda: client.eval(_RELEASE, 1, self.key, token))
        if not released:
            raise self._lost("released")

    def extend(self, ttl: float | None = None) -> None:
        """Make the lock live ``ttl`` (default: the lock's) seconds from now; LockLost if gone."""
        token = self._current_token()
        client = self._locks._sync()
        ms = int((ttl or self.ttl) * 1000)
        if not self._command(lambda: client.eval(_EXTEND, 1, self.key, token, ms)):
            self._token = None
            raise self._lost("extended")

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise LockTimeout(f"lock {self.key!r} not acquired within {self.timeout}s")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is None:
            return  # released inside the block, or extend() already reported the loss
        try:
            self.release()
        except LockLost:
            if exc is None:
                raise  # an exception of the block's own matters more

    # -- async -----------------------------------------------------------------------
    async def aacquire(self, *, timeout: float | None = -1) -> bool:
        """Async twin of :meth:`acquire`."""
        client = await self._locks._async()
        token = secrets.token_hex(16)
        deadline = _deadline(self.timeout if timeout == -1 else timeout)
        delay = _RETRY_FIRST
        while True:
            if await self._acommand(client.set(self.key, token, nx=True, px=self._ttl_ms())):
                self._token = token
                return True
            if deadline is not None and time.monotonic() + delay > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    async def arelease(self) -> None:
        """Async twin of :meth:`release`."""
        token = self._take_token()
        client = await self._locks._async()
        if not await self._acommand(client.eval(_RELEASE, 1, self.key, token)):
            raise self._lost("released")

    async def aextend(self, ttl: float | None = None) -> None:
        """Async twin of :meth:`extend`."""
        token = self._current_token()
        client = await self._locks._async()
        ms = int((ttl or self.ttl) * 1000)
        if not await self._acommand(client.eval(_EXTEND, 1, self.key, token, ms)):
            self._token = None
            raise self._lost("extended")

    async def __aenter__(self) -> Lock:
        if not await self.aacquire():
            raise LockTimeout(f"lock {self.key!r} not acquired within {self.timeout}s")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is None:
            return
        try:
            await self.arelease()
        except LockLost:
            if exc is None:
                raise

    # -- helpers ---------------------------------------------------------------------
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def _current_token(self) -> str:
        if self._token is None:
            raise CacheError(f"lock {self.key!r} is not held")
        return self._token

    def _take_token(self) -> str:
        token = self._current_token()
        self._token = None
        return token

    def _lost(self, action: str) -> LockLost:
        return LockLost(
            f"lock {self.key!r} expired before it was {action} (ttl {self.ttl:g}s): "
            "another holder may have run at the same time; raise the ttl or extend() it"
        )

    def _command(self, call: Any) -> Any:
        redis_module = require("redis", "redis")
        try:
            return call()
        except (redis_module.RedisError, OSError) as exc:
            raise CacheError(f"lock {self.key!r}: Redis failed: {exc}") from exc

    async def _acommand(self, awaitable: Any) -> Any:
        redis_module = require("redis", "redis")
        try:
            return await awaitable
        except (redis_module.RedisError, OSError) as exc:
            raise CacheError(f"lock {self.key!r}: Redis failed: {exc}") from exc


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def _pending(value: object) -> bool:
    """A coroutine or future still to await (an asyncio Redis client is awaitable too)."""
    return inspect.iscoroutine(value) or asyncio.isfuture(value)
