"""Function results cached in Redis: stable keys, typed values, no stampedes.

Get a :class:`Cache` from the container (``container.redis.cache()``) or build
one around clients, then decorate sync or async functions::

    cache = container.redis.cache()

    @cache.cached(ttl=60)
    def profile(user_id: int) -> Profile: ...

    @cache.cached(ttl=60, key="user:{user_id}")
    async def aprofile(user_id: int) -> Profile: ...

A module decorated before the container exists passes a provider, resolved
at the first call: ``@cached(ttl=60, cache=Container.redis.cache)``.

Keys
    ``<namespace>:<version>:<function>:<arguments>``. ``<function>`` is
    ``module.qualname`` (or ``namespace=``); ``<arguments>`` is a digest of the
    call's arguments bound to the signature with defaults applied, so
    ``f(1, b=2)`` and ``f(1, 2)`` share a key (plain scalar arguments appear as
    text, anything else as a hash). pydantic models, enums, dates, UUIDs and
    sets key by value; ``self``/``cls`` and names in ``ignore=`` are left out.
    ``key=`` replaces ``<function>:<arguments>`` with a template
    (``"user:{user_id}"``) or a function of the call's arguments. Changing
    ``version`` invalidates every key at once; ``f.invalidate(*args)``
    deletes one.

Values
    JSON through a pydantic ``TypeAdapter`` of the function's return
    annotation, so a ``-> Profile`` function gets a ``Profile`` back (without
    an annotation, plain JSON comes back). Values of ``compress_min_size``
    bytes or more are zlib-compressed. ``None`` is cached like any value. A
    stored value that no longer validates (the model changed) is a miss.

Stampedes
    Every call is one ``SET key <claim> NX GET PX lock_ttl`` (Redis 7+; a Lua
    script on older servers): it returns the value, or finds the key missing
    and leaves a short claim in its place, so the key itself is the Redis
    lock. Concurrent calls for one key in a process share one computation
    (single-flight); other processes that find the claim poll for the value
    and compute themselves only if the claim expires without one (a failed
    computation gives its claim back at once). A hit costs one round trip
    like a GET; a miss two, like GET then SET.

When Redis is down
    ``on_error="call"`` (the default) calls the function uncached, logs one
    WARNING per outage to ``dtpyfw.redis`` and skips Redis for
    ``retry_after`` seconds, so an outage costs no timeouts on every call.
    ``on_error="raise"`` raises :class:`~dtpyfw.core.errors.CacheError`.
"""

from __future__ import annotations

__all__ = ["Cache", "CachedFunction", "cached"]

import asyncio
import dataclasses
import enum
import functools
import hashlib
import inspect
import itertools
import json
import logging
import secrets
import threading
import time
import typing
import zlib
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, cast
from uuid import UUID

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from dtpyfw.core._extras import require
from dtpyfw.core.errors import CacheError
from dtpyfw.redis._settings import CacheSettings

if TYPE_CHECKING:
    import redis
    import redis.asyncio

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("dtpyfw.redis")

_PLAIN, _ZLIB, _CLAIMED = b"\x00", b"\x01", b"\x02"
_WAIT_FIRST, _WAIT_MAX = 0.005, 0.05
_SHORT_KEY = 64  # argument text up to this long is the key itself; longer is hashed
_SCALARS = frozenset({int, str, float, bool, type(None)})

# What SET ... NX GET does, for servers older than Redis 7.
_CLAIM_SCRIPT = """
local value = redis.call('GET', KEYS[1])
if value then return value end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
# Delete a claim only if it is still ours.
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Claims only need to differ between holders: a random process prefix and a counter.
_TOKEN_PREFIX = secrets.token_hex(6).encode()
_TOKENS = itertools.count()


class Cache:
    """Caches function results in Redis; see the module docstring for the rules.

    ``client`` serves sync functions and ``async_client`` async ones; each may
    be a client or a zero-argument callable returning one (an async callable,
    or an async Resource provider, is awaited), resolved at first use.
    """

    def __init__(
        self,
        client: Any = None,
        async_client: Any = None,
        *,
        namespace: str = "cache",
        version: str = "1",
        default_ttl: float = 300.0,
        compress_min_size: int | None = 1024,
        lock_ttl: float = 10.0,
        on_error: Literal["call", "raise"] = "call",
        retry_after: float = 5.0,
    ) -> None:
        if on_error not in ("call", "raise"):
            raise ValueError(f"on_error must be 'call' or 'raise', not {on_error!r}")
        self.namespace = namespace
        self.version = version
        self.default_ttl = default_ttl
        self.compress_min_size = compress_min_size
        self.lock_ttl = lock_ttl
        self.on_error = on_error
        self.retry_after = retry_after
        self._lock_ms = max(1, int(lock_ttl * 1000))
        self._client_source = client
        self._async_client_source = async_client
        self._sync: _SyncSide | None = None
        self._async: _AsyncSide | None = None
        self._async_lock = threading.Lock()
        self._flights = _Flights()
        self._async_flights: dict[tuple[int, str], asyncio.Future[Any]] = {}
        self._down_until = 0.0
        self._outage_logged = False

    @classmethod
    def from_settings(
        cls, settings: CacheSettings, *, client: Any = None, async_client: Any = None
    ) -> Cache:
        """A cache with the defaults of the ``redis.cache`` section."""
        return cls(
            client,
            async_client,
            namespace=settings.namespace,
            version=settings.version,
            default_ttl=settings.default_ttl,
            compress_min_size=settings.compress_min_size,
            lock_ttl=settings.lock_ttl,
            on_error=settings.on_error,
            retry_after=settings.retry_after,
        )

    def __repr__(self) -> str:
        return f"Cache(namespace={self.namespace!r}, version={self.version!r})"

    def cached(
        self,
        ttl: float | None = None,
        *,
        key: str | Callable[..., str] | None = None,
        namespace: str | None = None,
        compress: bool | None = None,
        ignore: tuple[str, ...] = (),
    ) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
        """Decorator caching a sync or async function's results for ``ttl`` seconds.

        ``compress`` forces zlib on (True) or off (False); None follows
        ``compress_min_size``.
        """
        return cached(
            ttl, cache=self, key=key, namespace=namespace, compress=compress, ignore=ignore
        )

    def full_key(self, key: str) -> str:
        """``key`` with this cache's namespace and version in front."""
        return f"{self.namespace}:{self.version}:{key}"

    def delete(self, key: str) -> None:
        """Delete the value stored under ``key`` (a full key, as ``f.key(...)`` gives)."""
        side = self._sync_side()
        try:
            side.client.delete(key)
        except side.errors as exc:
            raise CacheError(f"cache delete of {key!r} failed: {exc}") from exc

    async def adelete(self, key: str) -> None:
        """Async twin of :meth:`delete`."""
        side = await self._async_side()
        try:
            await side.client.delete(key)
        except side.errors as exc:
            raise CacheError(f"cache delete of {key!r} failed: {exc}") from exc

    # -- Redis access, with the outage bypass ----------------------------------------
    def _available(self) -> bool:
        return self._down_until <= time.monotonic()

    def _failed(self, exc: BaseException) -> None:
        if self.on_error == "raise":
            raise CacheError(f"cache unavailable: {type(exc).__name__}: {exc}") from exc
        self._down_until = time.monotonic() + self.retry_after
        if not self._outage_logged:
            self._outage_logged = True
            logger.warning(
                "cache unavailable, calling through uncached for %gs at a time: %s: %s",
                self.retry_after,
                type(exc).__name__,
                exc,
                extra={"namespace": self.namespace},
            )

    def _recovered(self) -> None:
        if self._outage_logged:
            self._outage_logged = False
            logger.info("cache reachable again", extra={"namespace": self.namespace})

    def _sync_side(self) -> _SyncSide:
        side = self._sync
        if side is None:
            source = self._client_source
            if source is None:
                raise CacheError(
                    "this Cache has no sync Redis client: build it with client=... "
                    "(the container's `redis.cache` does)"
                )
            client = source() if callable(source) else source
            side = self._sync = _SyncSide(client)
        return side

    async def _async_side(self) -> _AsyncSide:
        side = self._async
        if side is None:
            source = self._async_client_source
            if source is None:
                raise CacheError(
                    "this Cache has no async Redis client: build it with async_client=... "
                    "(the container's `redis.cache` does)"
                )
            client = source() if callable(source) else source
            while _pending(client):
                client = await client
            with self._async_lock:
                side = self._async = self._async or _AsyncSide(client)
        return side


class CachedFunction(Generic[P, R]):
    """A function whose results are cached; call it like the function it wraps.

    ``key(*args, **kwargs)`` is the full Redis key of a call;
    ``invalidate(*args, **kwargs)`` (``ainvalidate`` for async functions)
    deletes its value.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        cache: Cache | Callable[[], Cache],
        *,
        ttl: float | None,
        key: str | Callable[..., str] | None,
        namespace: str | None,
        compress: bool | None,
        ignore: tuple[str, ...],
    ) -> None:
        functools.update_wrapper(self, fn)
        self.__wrapped__ = fn
        self._fn = fn
        self._cache_source = cache
        self._cache: Cache | None = cache if isinstance(cache, Cache) else None
        self._ttl = ttl
        self._key = key
        self._name = namespace or f"{fn.__module__}.{fn.__qualname__}"
        self._compress = compress
        self._ignore = frozenset(ignore) | {"self", "cls"}
        self._signature = inspect.signature(fn)
        # The common case binds by position alone: names of plain parameters, no defaults.
        self._plain_names = _plain_parameters(self._signature, self._ignore)
        self._is_async = inspect.iscoroutinefunction(fn)
        self._adapter_value: TypeAdapter[Any] | None = None
        self._validate: Callable[[bytes], Any] | None = None
        self._prefix: str | None = None

    def __repr__(self) -> str:
        return f"<cached {self._name}>"

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return functools.partial(cast(Callable[..., Any], self), instance)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._is_async:
            return cast(R, self._acall(args, kwargs))
        return self._call(args, kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The full Redis key of the call ``fn(*args, **kwargs)``."""
        cache = self._cache or self._resolve_cache()
        if self._key is None:
            prefix = self._prefix or self._make_prefix(cache)
            return prefix + self._arguments(args, kwargs)
        if callable(self._key):
            return cache.full_key(str(self._key(*args, **kwargs)))
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return cache.full_key(self._key.format(**bound.arguments))

    def invalidate(self, *args: Any, **kwargs: Any) -> None:
        """Delete the cached value of ``fn(*args, **kwargs)``."""
        cache = self._cache or self._resolve_cache()
        cache.delete(self.key(*args, **kwargs))

    async def ainvalidate(self, *args: Any, **kwargs: Any) -> None:
        """Async twin of :meth:`invalidate`."""
        cache = self._cache or self._resolve_cache()
        await cache.adelete(self.key(*args, **kwargs))

    # -- sync ------------------------------------------------------------------------
    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        cache = self._cache or self._resolve_cache()
        if cache._down_until and not cache._available():
            return self._fn(*args, **kwargs)
        if self._key is None and self._prefix is not None:
            key = self._prefix + self._arguments(args, kwargs)
        else:
            key = self.key(*args, **kwargs)
        side = cache._sync or cache._sync_side()
        token = _token()
        try:
            found = side.claim(key, token, cache._lock_ms)
        except side.errors as exc:
            cache._failed(exc)
            return self._fn(*args, **kwargs)
        if found is not None and found[:1] != _CLAIMED:
            hit, value = self._decode(found)
            if hit:
                if cache._outage_logged:
                    cache._recovered()
                return cast(R, value)
            return self._compute(
                cache, side, key, token=None, args=args, kwargs=kwargs
            )  # unusable: overwrite
        if found is None:
            return self._compute(cache, side, key, token=token, args=args, kwargs=kwargs)
        return self._wait(cache, side, key, token=token, args=args, kwargs=kwargs)

    def _compute(
        self,
        cache: Cache,
        side: _SyncSide,
        key: str,
        *,
        token: bytes | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        """Compute (we hold the claim when ``token`` is set) and store; local callers wait."""
        flight, leader = cache._flights.join(key)
        if not leader:
            return cast(R, flight.wait())
        try:
            value = self._fn(*args, **kwargs)
        except BaseException as exc:
            flight.fail(exc)
            if token is not None:
                self._release(cache, side, key, token)
            raise
        finally:
            cache._flights.leave(key, flight)
        flight.finish(value)
        encoded = self._encode(cache, value)
        try:
            side.store(key, encoded, self._ttl_ms(cache))
        except side.errors as exc:
            cache._failed(exc)
        return value

    def _wait(
        self,
        cache: Cache,
        side: _SyncSide,
        key: str,
        *,
        token: bytes,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        """Someone is computing ``key``: wait for them here or in Redis, or take over."""
        flight = cache._flights.current(key)
        if flight is not None:
            return cast(R, flight.wait())
        deadline = time.monotonic() + cache.lock_ttl
        delay = _WAIT_FIRST
        while time.monotonic() + delay <= deadline:
            time.sleep(delay)
            delay = min(delay * 2, _WAIT_MAX)
            try:
                found = side.claim(key, token, cache._lock_ms)
            except side.errors as exc:
                cache._failed(exc)
                return self._fn(*args, **kwargs)
            if found is None:
                return self._compute(cache, side, key, token=token, args=args, kwargs=kwargs)
            if found[:1] != _CLAIMED:
                hit, value = self._decode(found)
                if hit:
                    return cast(R, value)
                break
        # The claim outlived its holder's patience: compute without it.
        return self._compute(cache, side, key, token=None, args=args, kwargs=kwargs)

    def _release(self, cache: Cache, side: _SyncSide, key: str, token: bytes) -> None:
        """Give the claim back after a failed computation, so others need not wait it out."""
        try:
            side.release(key, token)
        except side.errors as exc:
            cache._failed(exc)

    # -- async -----------------------------------------------------------------------
    async def _acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        cache = self._cache or self._resolve_cache()
        fn = cast(Callable[..., Awaitable[Any]], self._fn)
        if cache._down_until and not cache._available():
            return await fn(*args, **kwargs)
        key = self.key(*args, **kwargs)
        side = cache._async or await cache._async_side()
        token = _token()
        try:
            found = await side.claim(key, token, cache._lock_ms)
        except side.errors as exc:
            cache._failed(exc)
            return await fn(*args, **kwargs)
        if found is not None and found[:1] != _CLAIMED:
            hit, value = self._decode(found)
            if hit:
                if cache._outage_logged:
                    cache._recovered()
                return value
            return await self._acompute(
                cache, side, key, token=None, fn=fn, args=args, kwargs=kwargs
            )
        if found is None:
            return await self._acompute(
                cache, side, key, token=token, fn=fn, args=args, kwargs=kwargs
            )
        return await self._await(cache, side, key, token=token, fn=fn, args=args, kwargs=kwargs)

    async def _acompute(
        self,
        cache: Cache,
        side: _AsyncSide,
        key: str,
        *,
        token: bytes | None,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        loop = asyncio.get_running_loop()
        flight_key = (id(loop), key)
        flights = cache._async_flights
        current = flights.get(flight_key)
        if current is not None:
            return await asyncio.shield(current)
        future: asyncio.Future[Any] = loop.create_future()
        flights[flight_key] = future
        try:
            value = await fn(*args, **kwargs)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # followers may be none: mark it retrieved
            if token is not None:
                try:
                    await side.release(key, token)
                except side.errors as error:
                    cache._failed(error)
            raise
        finally:
            if flights.get(flight_key) is future:
                del flights[flight_key]
        future.set_result(value)
        encoded = self._encode(cache, value)
        try:
            await side.store(key, encoded, self._ttl_ms(cache))
        except side.errors as exc:
            cache._failed(exc)
        return value

    async def _await(
        self,
        cache: Cache,
        side: _AsyncSide,
        key: str,
        *,
        token: bytes,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        current = cache._async_flights.get((id(asyncio.get_running_loop()), key))
        if current is not None:
            return await asyncio.shield(current)
        deadline = time.monotonic() + cache.lock_ttl
        delay = _WAIT_FIRST
        while time.monotonic() + delay <= deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _WAIT_MAX)
            try:
                found = await side.claim(key, token, cache._lock_ms)
            except side.errors as exc:
                cache._failed(exc)
                return await fn(*args, **kwargs)
            if found is None:
                return await self._acompute(
                    cache, side, key, token=token, fn=fn, args=args, kwargs=kwargs
                )
            if found[:1] != _CLAIMED:
                hit, value = self._decode(found)
                if hit:
                    return value
                break
        return await self._acompute(cache, side, key, token=None, fn=fn, args=args, kwargs=kwargs)

    # -- helpers ---------------------------------------------------------------------
    def _resolve_cache(self) -> Cache:
        cache = self._cache
        if cache is None:
            source = cast(Callable[[], Cache], self._cache_source)
            resolved = source()
            if not isinstance(resolved, Cache):
                raise CacheError(
                    f"cache= of {self._name} returned {type(resolved).__name__}, not a Cache"
                )
            cache = self._cache = resolved
        return cache

    def _make_prefix(self, cache: Cache) -> str:
        prefix = self._prefix = cache.full_key(f"{self._name}:")
        return prefix

    def _ttl_ms(self, cache: Cache) -> int:
        return max(1, int((self._ttl if self._ttl is not None else cache.default_ttl) * 1000))

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key part naming the arguments: short ones as text, longer ones hashed."""
        names = self._plain_names
        if names is not None and not kwargs and len(args) == len(names):
            if len(args) == 1 and args[0].__class__ in _SCALARS:
                text = repr(args[0])
                return text if len(text) <= _SHORT_KEY else _digest(text)
            if all(arg.__class__ in _SCALARS for arg in args):
                text = ",".join(map(repr, args))  # repr keeps 1, '1' and 1.0 apart
                return text if len(text) <= _SHORT_KEY else _digest(text)
            pairs: Any = zip(names, args, strict=True)
        else:
            bound = self._signature.bind(*args, **kwargs)
            bound.apply_defaults()
            pairs = bound.arguments.items()
        items = [(k, v) for k, v in pairs if k not in self._ignore]
        try:
            text = json.dumps(items, sort_keys=True, separators=(",", ":"), default=_key_part)
        except (TypeError, ValueError) as exc:
            raise CacheError(
                f"the arguments of {self._name} cannot form a cache key ({exc}); "
                "pass key=... or leave the argument out with ignore=(...)"
            ) from exc
        return "j" + _digest(text)

    def _adapter(self) -> TypeAdapter[Any]:
        adapter = self._adapter_value
        if adapter is None:
            try:
                hints = typing.get_type_hints(self._fn)
            except Exception:  # unresolvable forward references: plain JSON it is
                hints = {}
            adapter = self._adapter_value = TypeAdapter(hints.get("return", Any))
            self._validate = adapter.validate_json
        return adapter

    def _encode(self, cache: Cache, value: Any) -> bytes:
        try:
            data = self._adapter().dump_json(value)
        except PydanticSerializationError as exc:
            raise CacheError(f"the result of {self._name} cannot be cached as JSON: {exc}") from exc
        if self._compress is None:
            threshold = cache.compress_min_size
            compress = threshold is not None and len(data) >= threshold
        else:
            compress = self._compress
        if compress:
            packed = zlib.compress(data)
            if self._compress or len(packed) < len(data):
                return _ZLIB + packed
        return _PLAIN + data

    def _decode(self, raw: bytes) -> tuple[bool, Any]:
        """``(True, value)``, or ``(False, None)`` when the stored value is unusable."""
        validate = self._validate or self._adapter().validate_json
        head = raw[:1]
        try:
            if head == _PLAIN:
                return True, validate(raw[1:])
            if head == _ZLIB:
                return True, validate(zlib.decompress(raw[1:]))
        except (ValidationError, zlib.error, ValueError) as exc:
            logger.debug("cached value of %s is unusable, recomputing: %s", self._name, exc)
        return False, None


def cached(
    ttl: float | None = None,
    *,
    cache: Cache | Callable[[], Cache],
    key: str | Callable[..., str] | None = None,
    namespace: str | None = None,
    compress: bool | None = None,
    ignore: tuple[str, ...] = (),
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Decorator caching a function in ``cache``: a Cache, or a provider of one.

    A provider (any zero-argument callable) is resolved at the first call, so a
    module can be decorated before the container is built.
    """

    def decorate(fn: Callable[P, R]) -> CachedFunction[P, R]:
        return CachedFunction(
            fn,
            cache,
            ttl=ttl,
            key=key,
            namespace=namespace,
            compress=compress,
            ignore=ignore,
        )

    return decorate


# --- internals -----------------------------------------------------------------------------


class _SyncSide:
    """A sync client, how it claims keys, and the exceptions that mean "down".

    Claiming is ``SET key <claimed> NX GET PX lock_ttl`` (Redis 7+): one native
    command that returns the value, or nothing after writing a short-lived
    claim that tells other processes the value is being computed. On older
    servers (where SET refuses NX with GET) a Lua script does the same.
    """

    def __init__(self, client: redis.Redis) -> None:
        redis_module = require("redis", "redis")
        self.client = client
        self.errors: tuple[type[BaseException], ...] = (redis_module.RedisError, OSError)
        self._response_error: type[BaseException] = redis_module.ResponseError
        self._native = True

    def claim(self, key: str, token: bytes, lock_ms: int) -> bytes | None:
        claim = _CLAIMED + token
        if self._native:
            try:
                # execute_command, not set(): its argument checks cost more than the round trip
                # Bytes arguments and a bytes command name skip redis-py's encoding
                # and reply callback: the raw reply (value or nil) is what we want.
                found = self.client.execute_command(  # type: ignore[no-untyped-call]
                    b"SET", key, claim, b"NX", b"GET", b"PX", b"%d" % lock_ms
                )
                return cast("bytes | None", found)
            except self._response_error as exc:
                if "syntax" not in str(exc).lower():
                    raise
                self._native = False  # Redis < 7: NX and GET together need a script
        return cast(
            "bytes | None",
            self.client.eval(_CLAIM_SCRIPT, 1, key, claim, lock_ms),
        )

    def store(self, key: str, value: bytes, ttl_ms: int) -> None:
        self.client.execute_command(b"SET", key, value, b"PX", b"%d" % ttl_ms)  # type: ignore[no-untyped-call]

    def release(self, key: str, token: bytes) -> None:
        self.client.eval(_RELEASE_SCRIPT, 1, key, _CLAIMED + token)


class _AsyncSide:
    """Async twin of :class:`_SyncSide`."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        redis_module = require("redis", "redis")
        self.client = client
        self.errors: tuple[type[BaseException], ...] = (redis_module.RedisError, OSError)
        self._response_error: type[BaseException] = redis_module.ResponseError
        self._native = True

    async def claim(self, key: str, token: bytes, lock_ms: int) -> bytes | None:
        claim = _CLAIMED + token
        if self._native:
            try:
                found: bytes | None = await self.client.execute_command(  # type: ignore[no-untyped-call]
                    b"SET", key, claim, b"NX", b"GET", b"PX", b"%d" % lock_ms
                )
                return found
            except self._response_error as exc:
                if "syntax" not in str(exc).lower():
                    raise
                self._native = False
        scripted: bytes | None = await self.client.eval(  # type: ignore[misc]
            _CLAIM_SCRIPT, 1, key, claim, lock_ms
        )
        return scripted

    async def store(self, key: str, value: bytes, ttl_ms: int) -> None:
        await self.client.execute_command(b"SET", key, value, b"PX", b"%d" % ttl_ms)  # type: ignore[no-untyped-call]

    async def release(self, key: str, token: bytes) -> None:
        await self.client.eval(_RELEASE_SCRIPT, 1, key, _CLAIMED + token)  # type: ignore[misc]


class _Flight:
    """One in-process computation of a key that concurrent callers wait for."""

    __slots__ = ("_done", "error", "value")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()  # released once the leader has a result
        self.value: Any = None
        self.error: BaseException | None = None

    def finish(self, value: Any) -> None:
        self.value = value
        self._done.release()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._done.release()

    def wait(self) -> Any:
        with self._done:
            pass
        if self.error is not None:
            raise self.error
        return self.value


class _Flights:
    """The computations in progress, by key: the first caller leads, the others wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, _Flight] = {}

    def current(self, key: str) -> _Flight | None:
        return self._calls.get(key)

    def join(self, key: str) -> tuple[_Flight, bool]:
        with self._lock:
            flight = self._calls.get(key)
            if flight is not None:
                return flight, False
            flight = self._calls[key] = _Flight()
            return flight, True

    def leave(self, key: str, flight: _Flight) -> None:
        with self._lock:
            if self._calls.get(key) is flight:
                del self._calls[key]


def _plain_parameters(
    signature: inspect.Signature, ignore: frozenset[str]
) -> tuple[str, ...] | None:
    """Parameter names when all are positional-or-keyword, without defaults, none ignored."""
    names = []
    for parameter in signature.parameters.values():
        if (
            parameter.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD
            or parameter.default is not inspect.Parameter.empty
            or parameter.name in ignore
        ):
            return None
        names.append(parameter.name)
    return tuple(names)


def _token() -> bytes:
    return b"%s%d" % (_TOKEN_PREFIX, next(_TOKENS))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _key_part(value: Any) -> Any:  # noqa: PLR0911 - one return per kind of value
    """JSON for argument values json does not know, keyed by value."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    if isinstance(value, UUID | Decimal | PurePath):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(json.dumps(v, sort_keys=True, default=_key_part) for v in value)
    if isinstance(value, bytes):
        return value.hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__qualname__} has no stable key form")


def _pending(value: object) -> bool:
    """A coroutine or future still to await (an asyncio Redis client is awaitable too)."""
    return inspect.iscoroutine(value) or asyncio.isfuture(value)
