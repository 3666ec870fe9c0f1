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
be redelivered.

``messaging.idempotency.skip_processed`` makes the runner do this for every
handler, as an **atomic claim**: before the handler runs, :meth:`claim`
takes the key for ``lease`` seconds (Redis: one ``SET NX GET``), so two
copies of a message delivered at once (a reclaim, a rebalance) never both
run it. The copy that finds the key claimed waits for the claim's outcome:
done (it is skipped), released because the handler failed (it claims and
runs), or lapsed because its holder died (it claims and runs). Keep
``lease`` above your slowest handler.
"""

from __future__ import annotations

__all__ = ["Claim", "IdempotencyStore", "MemoryIdempotencyStore", "RedisIdempotencyStore"]

import secrets
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from dtpyfw.core._extras import require
from dtpyfw.core.errors import MessagingError

if TYPE_CHECKING:
    import redis
    import redis.asyncio


#: What :meth:`IdempotencyStore.claim` found: the key is now ours, another holds it,
#: or it was processed.
Claim = Literal["claimed", "running", "done"]
_DONE = b"1"
_CLAIM_PREFIX = b"claim:"


@runtime_checkable
class IdempotencyStore(Protocol):
    """Which keys (message ids, usually) were processed, for ``ttl`` seconds."""

    def claim(self, key: str) -> Claim:
        """Take ``key`` for this process for ``lease`` seconds, unless held or processed."""
        ...

    def release(self, key: str) -> None:
        """Give up our claim on ``key`` (the work failed): another copy may take it."""
        ...

    async def aclaim(self, key: str) -> Claim:
        """Async twin of :meth:`claim`."""
        ...

    async def arelease(self, key: str) -> None:
        """Async twin of :meth:`release`."""
        ...

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

    def __init__(
        self, ttl: float = 86400.0, *, lease: float = 300.0, max_keys: int = 100_000
    ) -> None:
        self.ttl = ttl
        self.lease = lease
        self.max_keys = max_keys
        self._keys: OrderedDict[str, float] = OrderedDict()
        self._claims: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, key: str) -> Claim:
        """Atomic under one lock: done, running (a live claim), or now claimed."""
        now = time.monotonic()
        with self._lock:
            expires = self._keys.get(key)
            if expires is not None and expires > now:
                return "done"
            if self._claims.get(key, 0.0) > now:
                return "running"
            self._claims[key] = now + self.lease
            return "claimed"

    def release(self, key: str) -> None:
        """Forget the claim on ``key``."""
        with self._lock:
            self._claims.pop(key, None)

    async def aclaim(self, key: str) -> Claim:
        """Same as :meth:`claim` (nothing to wait for)."""
        return self.claim(key)

    async def arelease(self, key: str) -> None:
        """Same as :meth:`release`."""
        self.release(key)

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
        """Record ``key`` for ``ttl`` seconds (ending a claim on it)."""
        with self._lock:
            self._claims.pop(key, None)
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
        lease: float = 300.0,
        prefix: str = "idempotency",
    ) -> None:
        self.ttl = ttl
        self.lease = lease
        self.prefix = prefix
        # The token of each claim this store holds, so release() deletes only its own.
        self._tokens: dict[str, bytes] = {}
        self._tokens_lock = threading.Lock()
        self._client_source = client
        self._async_client_source = async_client
        self._client: redis.Redis | None = None
        self._async_client: redis.asyncio.Redis | None = None

    def __repr__(self) -> str:
        return f"RedisIdempotencyStore(prefix={self.prefix!r}, ttl={self.ttl:g})"

    def claim(self, key: str) -> Claim:
        """One ``SET key claim:<token> NX GET PX lease`` (Redis 7): atomic across processes."""
        token = _CLAIM_PREFIX + secrets.token_hex(8).encode()
        errors = _errors()
        try:
            previous = self._sync().set(
                self._key(key), token, nx=True, get=True, px=self._ms(self.lease)
            )
        except errors as exc:
            raise MessagingError(f"idempotency claim of {key!r} failed: {exc}") from exc
        return self._claimed(key, token, previous)

    def release(self, key: str) -> None:
        """Delete the key if it still holds our claim (compare and delete, in Lua)."""
        token = self._take_token(key)
        if token is None:
            return
        errors = _errors()
        try:
            self._sync().eval(_RELEASE, 1, self._key(key), token)
        except errors as exc:
            raise MessagingError(f"idempotency release of {key!r} failed: {exc}") from exc

    async def aclaim(self, key: str) -> Claim:
        """Async twin of :meth:`claim`."""
        token = _CLAIM_PREFIX + secrets.token_hex(8).encode()
        errors = _errors()
        try:
            client = await self._async()
            previous = await client.set(
                self._key(key), token, nx=True, get=True, px=self._ms(self.lease)
            )
        except errors as exc:
            raise MessagingError(f"idempotency claim of {key!r} failed: {exc}") from exc
        return self._claimed(key, token, previous)

    async def arelease(self, key: str) -> None:
        """Async twin of :meth:`release`."""
        token = self._take_token(key)
        if token is None:
            return
        errors = _errors()
        try:
            client = await self._async()
            await client.eval(_RELEASE, 1, self._key(key), token)  # type: ignore[misc]
        except errors as exc:
            raise MessagingError(f"idempotency release of {key!r} failed: {exc}") from exc

    def _claimed(self, key: str, token: bytes, previous: Any) -> Claim:
        if previous is None:
            with self._tokens_lock:
                self._tokens[key] = token
            return "claimed"
        if bytes(previous).startswith(_CLAIM_PREFIX):
            return "running"
        return "done"

    def _take_token(self, key: str) -> bytes | None:
        with self._tokens_lock:
            return self._tokens.pop(key, None)

    def processed(self, key: str) -> bool:
        """True when the key holds a processed mark (a live claim is not processed)."""
        errors = _errors()
        try:
            value: bytes | None = self._sync().get(self._key(key))  # type: ignore[assignment]
            return value is not None and not bytes(value).startswith(_CLAIM_PREFIX)
        except errors as exc:
            raise MessagingError(f"idempotency check of {key!r} failed: {exc}") from exc

    def mark(self, key: str) -> None:
        """SET the key with its TTL (replacing a claim on it)."""
        self._take_token(key)
        errors = _errors()
        try:
            self._sync().set(self._key(key), _DONE, px=self._ms(self.ttl))
        except errors as exc:
            raise MessagingError(f"idempotency record of {key!r} failed: {exc}") from exc

    async def aprocessed(self, key: str) -> bool:
        """Async twin of :meth:`processed`."""
        errors = _errors()
        try:
            client = await self._async()
            value = await client.get(self._key(key))
            return value is not None and not bytes(value).startswith(_CLAIM_PREFIX)
        except errors as exc:
            raise MessagingError(f"idempotency check of {key!r} failed: {exc}") from exc

    async def amark(self, key: str) -> None:
        """Async twin of :meth:`mark`."""
        self._take_token(key)
        errors = _errors()
        try:
            client = await self._async()
            await client.set(self._key(key), _DONE, px=self._ms(self.ttl))
        except errors as exc:
            raise MessagingError(f"idempotency record of {key!r} failed: {exc}") from exc

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, int(seconds * 1000))

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


# KEYS[1]: the key; ARGV[1]: our claim token. Deletes only a claim that is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _errors() -> tuple[type[BaseException], ...]:
    redis_module = require("redis", "redis")
    return (redis_module.RedisError, OSError)


def _pending(value: object) -> bool:
    import asyncio
    import inspect

    return inspect.iscoroutine(value) or asyncio.isfuture(value)
