"""Remembering which messages were already processed, for handlers that must not repeat work.

Delivery is at-least-once, so a handler can see a message twice (a consumer
crashed after handling it but before acknowledging it). A handler with side
effects asks the store::

    @handlers.handler("order.paid", group="mailer")
    @inject
    def send_receipt(message: Message, done: IdempotencyStore = Provide[...]) -> None:
        key = f"receipt:{message.id}"
        if done.processed(key):
            return
        mailer.send(...)
        done.mark(key)

Keys expire after ``ttl`` seconds: keep it longer than a message can take to
be redelivered. ``messaging.idempotency.skip_processed`` makes the runner do
this for every handler (one check and one record per message).
"""

from __future__ import annotations

__all__ = ["IdempotencyStore", "MemoryIdempotencyStore", "RedisIdempotencyStore"]

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from dtpyfw.core._extras import require
from dtpyfw.core.errors import MessagingError

if TYPE_CHECKING:
    import redis
    import redis.asyncio


@runtime_checkable
class IdempotencyStore(Protocol):
    """Which keys (message ids, usually) were processed, for ``ttl`` seconds."""

    def processed(self, key: str) -> bool:
        """True when ``key`` was marked and has not expired."""
        ...

    def mark(self, key: str) -> None:
        """Record ``key`` as processed."""
        ...

    async def aprocessed(self, key: str) -> bool:
        """Async twin of :meth:`processed`."""
        ...

    async def amark(self, key: str) -> None:
        """Async twin of :meth:`mark`."""
        ...


class MemoryIdempotencyStore:
    """In-process keys with a TTL, at most ``max_keys`` of them (oldest dropped first)."""

    def __init__(self, ttl: float = 86400.0, *, max_keys: int = 100_000) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self._keys: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryIdempotencyStore(<{len(self._keys)} keys>, ttl={self.ttl:g})"

    def processed(self, key: str) -> bool:
        """True when ``key`` was marked less than ``ttl`` seconds ago."""
        with self._lock:
            expires = self._keys.get(key)
            if expires is None:
                return False
            if expires <= time.monotonic():
                del self._keys[key]
                return False
            return True

    def mark(self, key: str) -> None:
        """Record ``key`` for ``ttl`` seconds."""
        with self._lock:
            self._keys[key] = time.monotonic() + self.ttl
            self._keys.move_to_end(key)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)

    async def aprocessed(self, key: str) -> bool:
        """Same as :meth:`processed` (nothing to wait for)."""
        return self.processed(key)

    async def amark(self, key: str) -> None:
        """Same as :meth:`mark`."""
        self.mark(key)


class RedisIdempotencyStore:
    """Keys in Redis (``<prefix>:<key>``, expiring after ``ttl``), shared by every process.

    ``client`` / ``async_client`` are clients or zero-argument callables
    returning one (async ones are awaited), resolved at first use.
    """

    def __init__(
        self,
        client: Any = None,
        async_client: Any = None,
        *,
        ttl: float = 86400.0,
        prefix: str = "idempotency",
    ) -> None:
        self.ttl = ttl
        self.prefix = prefix
        self._client_source = client
        self._async_client_source = async_client
        self._client: redis.Redis | None = None
        self._async_client: redis.asyncio.Redis | None = None

    def __repr__(self) -> str:
        return f"RedisIdempotencyStore(prefix={self.prefix!r}, ttl={self.ttl:g})"

    def processed(self, key: str) -> bool:
        """EXISTS on the key."""
        errors = _errors()
        try:
            return bool(self._sync().exists(self._key(key)))
        except errors as exc:
            raise MessagingError(f"idempotency check of {key!r} failed: {exc}") from exc

    def mark(self, key: str) -> None:
        """SET the key with its TTL."""
        errors = _errors()
        try:
            self._sync().set(self._key(key), b"1", px=self._ttl_ms())
        except errors as exc:
            raise MessagingError(f"idempotency record of {key!r} failed: {exc}") from exc

    async def aprocessed(self, key: str) -> bool:
        """Async twin of :meth:`processed`."""
        errors = _errors()
        try:
            client = await self._async()
            return bool(await client.exists(self._key(key)))
        except errors as exc:
            raise MessagingError(f"idempotency check of {key!r} failed: {exc}") from exc

    async def amark(self, key: str) -> None:
        """Async twin of :meth:`mark`."""
        errors = _errors()
        try:
            client = await self._async()
            await client.set(self._key(key), b"1", px=self._ttl_ms())
        except errors as exc:
            raise MessagingError(f"idempotency record of {key!r} failed: {exc}") from exc

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def _sync(self) -> redis.Redis:
        if self._client is None:
            source = self._client_source
            if source is None:
                raise MessagingError("this RedisIdempotencyStore has no sync client")
            self._client = source() if callable(source) else source
        return self._client

    async def _async(self) -> redis.asyncio.Redis:
        if self._async_client is None:
            source = self._async_client_source
            if source is None:
                raise MessagingError("this RedisIdempotencyStore has no async client")
            value = source() if callable(source) else source
            while _pending(value):
                value = await value
            self._async_client = value
        return self._async_client


def _errors() -> tuple[type[BaseException], ...]:
    redis_module = require("redis", "redis")
    return (redis_module.RedisError, OSError)


def _pending(value: object) -> bool:
    import asyncio
    import inspect

    return inspect.iscoroutine(value) or asyncio.isfuture(value)
