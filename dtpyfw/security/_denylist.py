"""Revoked token ids and refresh-token families: in memory, or in Redis for many instances.

A *family* is the chain of refresh tokens that one login starts: each refresh
replaces the family's current token with a new one. Presenting a token that
was already replaced means it leaked (or was replayed), and the whole family
is revoked (OWASP's refresh token rotation with reuse detection).
"""

from __future__ import annotations

__all__ = ["DenyList", "MemoryDenyList", "RedisDenyList", "Rotation", "create_deny_list"]

import enum
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from dtpyfw.core._extras import require
from dtpyfw.core.errors import CacheError, ConfigError, ConfigIssue

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from dtpyfw.redis._settings import RedisSettings
    from dtpyfw.security._settings import SecuritySettings


class Rotation(enum.Enum):
    """What :meth:`DenyList.rotate` did."""

    ROTATED = "rotated"  #: the presented token was current; the new one replaces it
    REUSED = "reused"  #: the presented token was already replaced: the family is now revoked
    UNKNOWN = "unknown"  #: the family ended (revoked, logged out or expired)


@runtime_checkable
class DenyList(Protocol):
    """Where revocations live. Sync and async twins share one meaning."""

    def revoke(self, jti: str, ttl: float) -> None:
        """Deny the token ``jti`` for ``ttl`` seconds (until it would have expired)."""

    def revoke_family(self, family: str, ttl: float) -> None:
        """Deny every token of ``family`` for ``ttl`` seconds and end its rotation."""

    def is_revoked(self, jti: str, family: str | None = None) -> bool:
        """Whether ``jti`` or its ``family`` is denied."""

    def start_family(self, family: str, jti: str, ttl: float) -> None:
        """Record ``jti`` as the current refresh token of a new ``family``."""

    def rotate(self, family: str, old_jti: str, new_jti: str, ttl: float) -> Rotation:
        """Replace ``old_jti`` by ``new_jti`` atomically; revoke the family on reuse."""

    async def arevoke(self, jti: str, ttl: float) -> None:
        """Async twin of :meth:`revoke`."""

    async def arevoke_family(self, family: str, ttl: float) -> None:
        """Async twin of :meth:`revoke_family`."""

    async def ais_revoked(self, jti: str, family: str | None = None) -> bool:
        """Async twin of :meth:`is_revoked`."""

    async def astart_family(self, family: str, jti: str, ttl: float) -> None:
        """Async twin of :meth:`start_family`."""

    async def arotate(self, family: str, old_jti: str, new_jti: str, ttl: float) -> Rotation:
        """Async twin of :meth:`rotate`."""


def create_deny_list(
    settings: SecuritySettings, redis_settings: RedisSettings | None = None
) -> MemoryDenyList | RedisDenyList:
    """The deny-list ``settings.deny_list`` names; ``redis`` needs ``redis_settings``."""
    if settings.deny_list == "memory":
        return MemoryDenyList()
    if redis_settings is None:
        raise ConfigError(
            ConfigIssue(
                path="security.deny_list",
                message="'redis' needs the `redis:` section (add it, or use 'memory')",
            )
        )
    return RedisDenyList(settings=redis_settings, prefix=settings.redis_prefix)


class MemoryDenyList:
    """A process-local deny-list: right for one instance and for tests.

    Entries expire with their ``ttl``; expired ones are swept as new ones arrive,
    so memory stays proportional to the live revocations.
    """

    _SWEEP_EVERY = 256

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._denied: dict[str, float] = {}
        self._current: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._writes = 0

    def revoke(self, jti: str, ttl: float) -> None:
        with self._lock:
            self._deny(f"jti:{jti}", ttl)

    def revoke_family(self, family: str, ttl: float) -> None:
        with self._lock:
            self._deny(f"fam:{family}", ttl)
            self._current.pop(family, None)

    def is_revoked(self, jti: str, family: str | None = None) -> bool:
        now = self._clock()
        denied = self._denied
        until = denied.get(f"jti:{jti}")
        if until is not None and until > now:
            return True
        if family is not None:
            until = denied.get(f"fam:{family}")
            if until is not None and until > now:
                return True
        return False

    def start_family(self, family: str, jti: str, ttl: float) -> None:
        with self._lock:
            self._current[family] = (jti, self._clock() + ttl)
            self._count_write()

    def rotate(self, family: str, old_jti: str, new_jti: str, ttl: float) -> Rotation:
        with self._lock:
            now = self._clock()
            current = self._current.get(family)
            if current is None or current[1] <= now:
                self._current.pop(family, None)
                return Rotation.UNKNOWN
            if current[0] != old_jti:
                self._deny(f"fam:{family}", ttl)
                del self._current[family]
                return Rotation.REUSED
            self._current[family] = (new_jti, now + ttl)
            return Rotation.ROTATED

    async def arevoke(self, jti: str, ttl: float) -> None:
        self.revoke(jti, ttl)

    async def arevoke_family(self, family: str, ttl: float) -> None:
        self.revoke_family(family, ttl)

    async def ais_revoked(self, jti: str, family: str | None = None) -> bool:
        return self.is_revoked(jti, family)

    async def astart_family(self, family: str, jti: str, ttl: float) -> None:
        self.start_family(family, jti, ttl)

    async def arotate(self, family: str, old_jti: str, new_jti: str, ttl: float) -> Rotation:
        return self.rotate(family, old_jti, new_jti, ttl)

    def ping(self) -> None:
        """Always healthy."""

    async def aping(self) -> None:
        """Always healthy."""

    def close(self) -> None:
        """Nothing to close."""

    async def aclose(self) -> None:
        """Nothing to close."""

    def __len__(self) -> int:
        now = self._clock()
        return sum(1 for until in self._denied.values() if until > now)

    def _deny(self, key: str, ttl: float) -> None:
        if ttl > 0:
            until = self._clock() + ttl
            self._denied[key] = max(until, self._denied.get(key, until))
            self._count_write()

    def _count_write(self) -> None:
        self._writes += 1
        if self._writes % self._SWEEP_EVERY == 0:
            now = self._clock()
            self._denied = {k: t for k, t in self._denied.items() if t > now}
            self._current = {k: v for k, v in self._current.items() if v[1] > now}


# KEYS[1] current-token key, KEYS[2] family-denied key;
# ARGV[1] presented jti, ARGV[2] new jti, ARGV[3] ttl in ms.
_ROTATE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if current ~= ARGV[1] then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return -1
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
_ROTATION = {1: Rotation.ROTATED, -1: Rotation.REUSED, 0: Rotation.UNKNOWN}


class RedisDenyList:
    """A deny-list shared by every instance through Redis; entries expire with the tokens.

    Give it clients (``client`` for the sync methods, ``async_client`` for the
    async ones), or ``settings`` to have it create them on first use and close
    them in :meth:`close` / :meth:`aclose`. Rotation is one Lua script, so two
    instances refreshing the same token at once cannot both win.
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        *,
        settings: RedisSettings | None = None,
        prefix: str = "dtpyfw:security:",
    ) -> None:
        if client is None and async_client is None and settings is None:
            raise ValueError("RedisDenyList needs a client, an async_client or settings")
        self.prefix = prefix
        self._settings = settings
        self._client = client
        self._async_client = async_client
        self._owned: set[str] = set()
        self._rotate_script: Any = None
        self._arotate_script: Any = None

    def __repr__(self) -> str:
        return f"RedisDenyList(prefix={self.prefix!r})"

    # -- sync ---------------------------------------------------------------------
    def revoke(self, jti: str, ttl: float) -> None:
        if ttl > 0:
            self._call(lambda r: r.set(self._key("jti", jti), b"1", px=_ms(ttl)))

    def revoke_family(self, family: str, ttl: float) -> None:
        def run(r: redis.Redis) -> Any:
            with r.pipeline(transaction=True) as pipe:
                pipe.set(self._key("fam", family), b"1", px=_ms(ttl))
                pipe.delete(self._key("cur", family))
                return pipe.execute()

        self._call(run)

    def is_revoked(self, jti: str, family: str | None = None) -> bool:
        keys = self._check_keys(jti, family)
        return bool(self._call(lambda r: r.exists(*keys)))

    def start_family(self, family: str, jti: str, ttl: float) -> None:
        self._call(lambda r: r.set(self._key("cur", family), jti.encode(), px=_ms(ttl)))

    def rotate(self, family: str, old_jti: str, new_jti: str, ttl: float) -> Rotation:
        def run(r: redis.Redis) -> Any:
            if self._rotate_script is None:
                self._rotate_script = r.register_script(_ROTATE)
            return self._rotate_script(
                keys=[self._key("cur", family), self._key("fam", family)],
                args=[old_jti, new_jti, _ms(ttl)],
            )

        return _ROTATION[int(self._call(run))]

    def ping(self) -> None:
        """PING through the sync client."""
        self._call(lambda r: r.ping())

    def close(self) -> None:
        """Close the sync client if this deny-list created it."""
        if "sync" in self._owned and self._client is not None:
            self._client.close()
            self._client = None
            self._rotate_script = None
            self._owned.discard("sync")

    # -- async --------------------------------------------------------------------
    async def arevoke(self, jti: str, ttl: float) -> None:
        if ttl > 0:
            client = self._async()
            await self._await(client.set(self._key("jti", jti), b"1", px=_ms(ttl)))

    async def arevoke_family(self, family: str, ttl: float) -> None:
        client = self._async()
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.set(self._key("fam", family), b"1", px=_ms(ttl))
                pipe.delete(self._key("cur", family))
                await pipe.execute()
        except _redis_errors() as exc:
            raise _failed(exc) from exc

    async def ais_revoked(self, jti: str, family: str | None = None) -> bool:
        client = self._async()
        return bool(await self._await(client.exists(*self._check_keys(jti, family))))

    async def astart_family(self, family: str, jti: str, ttl: float) -> None:
        client = self._async()
        await self._await(client.set(self._key("cur", family), jti.encode(), px=_ms(ttl)))

    async def arotate(self, family: str, old_jti: str, new_jti: str, ttl: float) -> Rotation:
        client = self._async()
        if self._arotate_script is None:
            self._arotate_script = client.register_script(_ROTATE)
        result = await self._await(
            self._arotate_script(
                keys=[self._key("cur", family), self._key("fam", family)],
                args=[old_jti, new_jti, _ms(ttl)],
            )
        )
        return _ROTATION[int(result)]

    async def aping(self) -> None:
        """PING through the async client."""
        await self._await(self._async().ping())

    async def aclose(self) -> None:
        """Close both clients if this deny-list created them."""
        self.close()
        if "async" in self._owned and self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None
            self._arotate_script = None
            self._owned.discard("async")

    # -- helpers ------------------------------------------------------------------
    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    def _check_keys(self, jti: str, family: str | None) -> list[str]:
        keys = [self._key("jti", jti)]
        if family is not None:
            keys.append(self._key("fam", family))
        return keys

    def _sync(self) -> redis.Redis:
        if self._client is None:
            if self._settings is None:
                raise CacheError("this RedisDenyList has no sync client")
            from dtpyfw.redis._client import create_client

            self._client = create_client(self._settings)
            self._owned.add("sync")
        return self._client

    def _async(self) -> redis.asyncio.Redis:
        if self._async_client is None:
            if self._settings is None:
                raise CacheError("this RedisDenyList has no async client")
            from dtpyfw.redis._client import create_async_client

            self._async_client = create_async_client(self._settings)
            self._owned.add("async")
        return self._async_client

    def _call(self, command: Callable[[redis.Redis], Any]) -> Any:
        client = self._sync()
        try:
            return command(client)
        except _redis_errors() as exc:
            raise _failed(exc) from exc

    async def _await(self, pending: Awaitable[Any] | Any) -> Any:
        try:
            return await cast("Awaitable[Any]", pending)
        except _redis_errors() as exc:
            raise _failed(exc) from exc


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _redis_errors() -> tuple[type[BaseException], ...]:
    redis_module = require("redis", "redis")
    return (redis_module.RedisError, OSError)


def _failed(exc: BaseException) -> CacheError:
    return CacheError(f"deny-list unavailable: {type(exc).__name__}")
