"""Rate limiting per client, in memory or on Redis, answering 429 with ``Retry-After``.

Two algorithms over windows of ``window`` seconds:

* ``fixed``: count requests per window; cheap, but allows a burst of twice the
  limit across a window boundary;
* ``sliding`` (default): the sliding-window counter, which weighs the previous
  window's count by how much of it still overlaps the last ``window`` seconds.

On Redis, one Lua script reads the server's clock, decides and counts
atomically, so every instance shares one counter per client without races.
If Redis fails, the request is let through and a warning logged: a limiter
outage must not become a service outage.

Clients are keyed by, in order: the authenticated principal (when an auth
dependency ran before the limit), the API key header (hashed), then the
client address (behind a proxy, run uvicorn with ``--proxy-headers`` and
``--forwarded-allow-ips`` so that it is the real client's).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the dependencies'
# annotations, and ``Request`` is imported only when a dependency is built.
__all__ = [
    "Decision",
    "MemoryRateLimitStore",
    "RateLimitStore",
    "RateLimited",
    "RedisRateLimitStore",
    "client_key",
    "rate_limit",
]

import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from dtpyfw.core.errors import DtpyfwError

if TYPE_CHECKING:
    import redis.asyncio
    from starlette.requests import Request

    from dtpyfw.api._settings import RateLimitSettings

_log = logging.getLogger("dtpyfw.api")
Algorithm = Literal["sliding", "fixed"]


class RateLimited(DtpyfwError):
    """Too many requests from this client: 429 with ``Retry-After``."""

    http_status = 429
    problem_type = "rate-limited"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many requests; retry in {retry_after} s")
        self.http_headers = {"Retry-After": str(retry_after)}


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may pass, how many remain, and seconds to wait when not."""

    allowed: bool
    remaining: int
    retry_after: float


class RateLimitStore(Protocol):
    """Counts hits per key and decides atomically."""

    async def hit(self, key: str, limit: int, window: float, algorithm: Algorithm) -> Decision:
        """Count one request of ``key`` unless it is over ``limit`` per ``window`` seconds."""


class MemoryRateLimitStore:
    """Counters in this process: for one instance, and for tests (``clock`` is injectable)."""

    _SWEEP_EVERY = 1024

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._state: dict[str, tuple[int, int, int]] = {}  # key -> (window index, count, prev)
        self._hits = 0

    async def hit(self, key: str, limit: int, window: float, algorithm: Algorithm) -> Decision:
        now_ms = int(self._clock() * 1000)
        window_ms = max(1, int(window * 1000))
        index, count, previous = self._state.get(key, (-2, 0, 0))
        decision, state = _decide(
            now_ms,
            window_ms=window_ms,
            limit=limit,
            sliding=algorithm == "sliding",
            index=index,
            count=count,
            previous=previous,
        )
        self._state[key] = state
        self._hits += 1
        if self._hits % self._SWEEP_EVERY == 0:
            current = now_ms // window_ms
            self._state = {k: v for k, v in self._state.items() if v[0] >= current - 1}
        return decision


# KEYS[1] the client's hash; ARGV[1] limit, ARGV[2] window in ms, ARGV[3] '1' for sliding.
# Mirrors _decide() below; uses the server's clock so every instance agrees.
_HIT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local sliding = ARGV[3] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local index = math.floor(now / window)
local elapsed = now - index * window
local state = redis.call('HMGET', KEYS[1], 'i', 'c', 'p')
local i = tonumber(state[1])
local count = tonumber(state[2]) or 0
local previous = tonumber(state[3]) or 0
if i == nil then
  count = 0; previous = 0
elseif i == index - 1 then
  previous = count; count = 0
elseif i ~= index then
  count = 0; previous = 0
end
local estimate = count
if sliding then estimate = previous * (window - elapsed) / window + count end
local allowed = 0
local wait = 0
if estimate + 1 <= limit then
  allowed = 1
  count = count + 1
  estimate = estimate + 1
elseif not sliding then
  wait = window - elapsed
elseif count + 1 > limit then
  wait = (window - elapsed) + window * (1 - (limit - 1) / count)
else
  wait = (window - elapsed) - (limit - 1 - count) * window / previous
end
redis.call('HSET', KEYS[1], 'i', index, 'c', count, 'p', previous)
redis.call('PEXPIRE', KEYS[1], window * 2)
return {allowed, math.floor(limit - estimate), math.ceil(wait)}
"""


class RedisRateLimitStore:
    """Counters in Redis, shared by every instance (one hash per client, expiring)."""

    def __init__(self, client: "redis.asyncio.Redis", *, prefix: str = "dtpyfw:ratelimit:") -> None:
        self._client = client
        self.prefix = prefix
        self._script: Any = client.register_script(_HIT)

    async def hit(self, key: str, limit: int, window: float, algorithm: Algorithm) -> Decision:
        window_ms = max(1, int(window * 1000))
        result = await cast(
            "Awaitable[list[int]]",
            self._script(
                keys=[f"{self.prefix}{key}"],
                args=[limit, window_ms, "1" if algorithm == "sliding" else "0"],
            ),
        )
        allowed, remaining, wait_ms = (int(v) for v in result)
        return Decision(bool(allowed), max(0, remaining), max(0, wait_ms) / 1000)


def rate_limit(
    limit: int,
    window: float = 60.0,
    *,
    name: str | None = None,
    algorithm: Algorithm | None = None,
    key: Callable[["Request"], str] | None = None,
) -> Callable[..., Awaitable[None]]:
    """A dependency allowing ``limit`` requests per ``window`` seconds per client.

    ``name`` separates counters (default: the route's method and path). Put it
    after an auth dependency (``dependencies=[Depends(bearer_user),
    Depends(rate_limit(10))]``) to count per user rather than per address.
    """
    from starlette.requests import Request

    if limit < 1 or window <= 0:
        raise ValueError("rate_limit needs limit >= 1 and window > 0")
    keyed = key or client_key

    async def dependency(request: Request) -> None:
        counter = name or _route_name(request)
        await enforce(request, f"{counter}:{keyed(request)}", limit, window, algorithm)

    return dependency


def app_rate_limit(settings: "RateLimitSettings") -> Callable[..., Awaitable[None]]:
    """The app-wide dependency ``create_app`` installs when ``api.rate_limit.limit`` is set."""
    from starlette.requests import Request

    limit, window = settings.limit or 0, settings.window
    exempt = frozenset(settings.exempt_paths)

    async def dependency(request: Request) -> None:
        if request.url.path not in exempt:
            await enforce(request, f"app:{client_key(request)}", limit, window)

    return dependency


async def enforce(
    request: "Request", key: str, limit: int, window: float, algorithm: Algorithm | None = None
) -> None:
    """Count one request for ``key`` on the app's store; raise :class:`RateLimited` when over."""
    store, default_algorithm = _store_of(request)
    try:
        decision = await store.hit(key, limit, window, algorithm or default_algorithm)
    except Exception as exc:  # fail open, loudly
        _log.warning(
            "rate limiter unavailable; letting the request through",
            extra={"error": type(exc).__name__},
        )
        return
    if not decision.allowed:
        raise RateLimited(max(1, math.ceil(decision.retry_after)))


def client_key(request: "Request") -> str:
    """The principal if authenticated, else the hashed API key, else the client address."""
    principal = getattr(request.state, "principal", None)
    if principal is not None:
        return f"{principal.method}:{principal.subject}"
    for header in ("x-api-key",):
        value = request.headers.get(header)
        if value:
            return "key:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    host = request.client.host if request.client is not None else "unknown"
    return f"ip:{host}"


def _route_name(request: "Request") -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    return f"{request.method}:{path}"


def _store_of(request: "Request") -> tuple[RateLimitStore, Algorithm]:
    state = request.app.state
    store = getattr(state, "rate_limit_store", None)
    if store is None:
        store = MemoryRateLimitStore()
        state.rate_limit_store = store
    return store, getattr(state, "rate_limit_algorithm", "sliding")


def _decide(
    now_ms: int,
    *,
    window_ms: int,
    limit: int,
    sliding: bool,
    index: int,
    count: int,
    previous: int,
) -> tuple[Decision, tuple[int, int, int]]:
    """The Lua script's logic in Python, for the memory store."""
    current = now_ms // window_ms
    elapsed = now_ms - current * window_ms
    if index == current - 1:
        previous, count = count, 0
    elif index != current:
        previous, count = 0, 0
    estimate: float = count
    if sliding:
        estimate = previous * (window_ms - elapsed) / window_ms + count
    wait: float = 0
    allowed = estimate + 1 <= limit
    if allowed:
        count += 1
        estimate += 1
    elif not sliding:
        wait = window_ms - elapsed
    elif count + 1 > limit:
        wait = (window_ms - elapsed) + window_ms * (1 - (limit - 1) / count)
    else:
        wait = (window_ms - elapsed) - (limit - 1 - count) * window_ms / previous
    decision = Decision(allowed, max(0, math.floor(limit - estimate)), max(0.0, wait) / 1000)
    return decision, (current, count, previous)
