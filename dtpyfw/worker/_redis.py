"""The ``redis`` strategy: tasks in Redis, taken by any number of worker processes.

**Layout.** Every key starts with ``{namespace}:`` (the braces are a Redis
Cluster hash tag: all keys of a namespace live in one slot, so the Lua
scripts may touch any of them)::

    job:<id>               hash: the envelope, state, attempt, times, error, result
    ready:<queue>:<0-9>    sorted set per queue and priority, scored by enqueue order
    delayed:<queue>        sorted set scored by eta (delay=, eta=, retry backoff)
    running:<queue>        sorted set scored by lease deadline (the visibility timeout)
    dead:<queue>           sorted set scored by time of death: the dead-letter queue
    stats:<queue>          hash of counters and gauges, "<name>:<priority>"
    wake:<queue>           list a waiting worker blocks on (BLPOP); enqueue pushes to it
    idem:<key>, ticks, seq, queues, workers, worker:<id>, skips:<worker>

**Why sorted sets per priority, not streams.** A worker must take the
highest-priority task across several queues, and do it atomically with
leasing it. One Lua script (``claim``) looks at the oldest task of every
(queue, priority), picks by :func:`~dtpyfw.worker._broker.choose`, moves it to
``running:<queue>`` with a deadline and bumps its delivery number; no task
can be taken twice. Streams with consumer groups would need one stream per
priority and a read per stream in priority order, outside any atomic step.

**Visibility timeout.** A running task's lease lasts ``visibility_timeout``;
its worker renews the leases of its tasks every third of that. A worker that
dies (SIGKILL, lost host) stops renewing; once a lease expires, the next
``claim`` by any worker puts the task back at its old place in line and it
runs again (counted as ``redelivered``). The ``max_deliveries``-th lapsed
lease of a task dead-letters it instead (``LeaseExpired``), so a task that
kills or hangs every worker it lands on ends; re-driving it resets the count.
Outcomes carry the delivery number: a late outcome from a worker presumed
dead is ignored, so a task's record is never overwritten by a run that no
longer owns it.

**Load balancing.** Workers pull: each free slot claims one task, so a busy
worker takes less and work spreads over the processes by their capacity.

Times in Redis come from the server's clock (``TIME``), so workers on hosts
with skewed clocks agree on deadlines and etas.
"""

from __future__ import annotations

__all__ = ["RedisBroker"]

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from dtpyfw.core._extras import require
from dtpyfw.core.errors import CacheError, ConfigError, MessagingError
from dtpyfw.redis._client import aping, create_async_client, create_client, ping
from dtpyfw.redis._settings import RedisSettings
from dtpyfw.worker._broker import PurgeTarget, Tick
from dtpyfw.worker._priority import PRIORITY_LEVELS
from dtpyfw.worker._records import (
    COUNTERS,
    GAUGES,
    TASK_SOURCE,
    Delivery,
    Outcome,
    QueueStats,
    TaskInfo,
    TaskMessage,
    TaskState,
    WorkerInfo,
    from_seconds,
)
from dtpyfw.worker._settings import WorkerSettings

if TYPE_CHECKING:
    import redis
    import redis.asyncio

_COMMON = """
local P = ARGV[1]
local clock = redis.call('TIME')
local function now_ms()
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
-- Record times as "seconds.micros" text: a Lua number would keep only 14 digits.
local function stamp()
  return clock[1] .. '.' .. string.format('%06d', tonumber(clock[2]))
end
local function job_key(id) return P .. 'job:' .. id end
local function ready_key(q, p) return P .. 'ready:' .. q .. ':' .. p end
local function stat(q, name, p, by)
  redis.call('HINCRBY', P .. 'stats:' .. q, name .. ':' .. p, by)
end
local function make_ready(id, q, p, seq)
  redis.call('ZADD', ready_key(q, p), seq, id)
  redis.call('HSET', job_key(id), 'state', 'queued')
  local wake = P .. 'wake:' .. q
  if redis.call('LLEN', wake) < 64 then redis.call('RPUSH', wake, '1') end
end
"""

# ARGV: P, id, queue, priority, envelope, delay ms, idempotency key, its ttl ms, schedule, tick ms
_ENQUEUE = (
    _COMMON
    + """
local id, q, p, msg = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local delay = tonumber(ARGV[6])
if ARGV[9] ~= '' then
  local last = tonumber(redis.call('HGET', P .. 'ticks', ARGV[9]) or '-1')
  if last >= tonumber(ARGV[10]) then return {0, ''} end
  redis.call('HSET', P .. 'ticks', ARGV[9], ARGV[10])
end
if ARGV[7] ~= '' then
  local key = P .. 'idem:' .. ARGV[7]
  local existing = redis.call('GET', key)
  if existing then return {0, existing} end
  redis.call('SET', key, id, 'PX', ARGV[8])
end
local now = now_ms()
local seq = redis.call('INCR', P .. 'seq')
local job = job_key(id)
redis.call('HSET', job, 'msg', msg, 'queue', q, 'prio', p, 'seq', seq, 'attempt', 1,
  'enq', stamp(), 'n', 0)
redis.call('SADD', P .. 'queues', q)
stat(q, 'enqueued', p, 1)
if delay > 0 then
  redis.call('HSET', job, 'state', 'delayed')
  redis.call('ZADD', P .. 'delayed:' .. q, now + delay, id)
  stat(q, 'delayed', p, 1)
else
  make_ready(id, q, p, seq)
end
return {1, id}
"""
)

# ARGV: P, count, consumer, visibility ms, starvation limit, max deliveries, queues...
# Returns {ms until the next delayed task or lease deadline (-1: none), {id, envelope,
# attempt, delivery number, enqueued ms}...}
_CLAIM = (
    _COMMON
    + """
local count, consumer = tonumber(ARGV[2]), ARGV[3]
local visibility, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local max_deliveries = tonumber(ARGV[6])
local queues = {}
for i = 7, #ARGV do queues[#queues + 1] = ARGV[i] end
local now = now_ms()
local next_due = -1
local function soonest(key)
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if head[1] then
    local wait = math.max(0, tonumber(head[2]) - now)
    if next_due < 0 or wait < next_due then next_due = wait end
  end
end
for _, q in ipairs(queues) do
  local delayed = P .. 'delayed:' .. q
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 500)) do
    redis.call('ZREM', delayed, id)
    local f = redis.call('HMGET', job_key(id), 'prio', 'seq')
    if f[1] then
      stat(q, 'delayed', f[1], -1)
      make_ready(id, q, tonumber(f[1]), tonumber(f[2]))
    end
  end
  local running = P .. 'running:' .. q
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', running, '-inf', now, 'LIMIT', 0, 500)) do
    redis.call('ZREM', running, id)
    local job = job_key(id)
    local f = redis.call('HMGET', job, 'prio', 'seq')
    if f[1] then
      stat(q, 'running', f[1], -1)
      -- Every lapsed lease is a delivery whose worker died or stalled: a task that
      -- kills its worker each time ends in the dead-letter queue, not in a cycle.
      local lapsed = redis.call('HINCRBY', job, 'lapsed', 1)
      if max_deliveries > 0 and lapsed >= max_deliveries then
        stat(q, 'failed', f[1], 1)
        stat(q, 'dead_lettered', f[1], 1)
        stat(q, 'dead', f[1], 1)
        redis.call('HSET', job, 'state', 'dead', 'finished', stamp(), 'error',
          'LeaseExpired: the lease expired ' .. lapsed .. ' times (max_deliveries ' ..
          max_deliveries .. '): the workers running it died or stalled', 'tb', '')
        redis.call('ZADD', P .. 'dead:' .. q, now, id)
      else
        stat(q, 'redelivered', f[1], 1)
        make_ready(id, q, tonumber(f[1]), tonumber(f[2]))
      end
    end
  end
  soonest(delayed)
  soonest(running)
end
local out = {next_due}
if count == 0 then return out end
local heads = {}
local function refresh(q, p)
  local head = redis.call('ZRANGE', ready_key(q, p), 0, 0, 'WITHSCORES')
  local slot = q .. ':' .. p
  if head[1] then
    heads[slot] = {q = q, p = p, id = head[1], seq = tonumber(head[2])}
  else
    heads[slot] = nil
  end
end
for _, q in ipairs(queues) do
  for p = 0, 9 do refresh(q, p) end
end
local skips_key = P .. 'skips:' .. consumer
local skips = tonumber(redis.call('GET', skips_key) or '0')
local taken = 0
while taken < count do
  local best, oldest = nil, nil
  for _, h in pairs(heads) do
    if best == nil or h.p > best.p or (h.p == best.p and h.seq < best.seq) then best = h end
    if oldest == nil or h.seq < oldest.seq then oldest = h end
  end
  if best == nil then break end
  local pick = best
  if oldest.seq < best.seq then
    if limit > 0 and skips >= limit then
      pick = oldest
      skips = 0
    else
      skips = skips + 1
    end
  else
    skips = 0
  end
  redis.call('ZREM', ready_key(pick.q, pick.p), pick.id)
  local job = job_key(pick.id)
  local f = redis.call('HMGET', job, 'msg', 'attempt', 'enq')
  if f[1] then
    local n = redis.call('HINCRBY', job, 'n', 1)
    redis.call('HSET', job, 'state', 'running', 'started', stamp(), 'worker', consumer)
    redis.call('ZADD', P .. 'running:' .. pick.q, now + visibility, pick.id)
    stat(pick.q, 'running', pick.p, 1)
    out[#out + 1] = {pick.id, f[1], f[2], n, f[3]}
    taken = taken + 1
  end
  refresh(pick.q, pick.p)
end
redis.call('SET', skips_key, skips, 'PX', 86400000)
return out
"""
)

# ARGV: P, result ttl ms, then per outcome: id, delivery number, kind, result, error,
# traceback, delay ms. Returns how many outcomes applied (stale ones are skipped).
_FINISH = (
    _COMMON
    + """
local ttl = tonumber(ARGV[2])
local now = now_ms()
local applied = 0
for i = 3, #ARGV, 7 do
  local id, token, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local result, err, tb, delay = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], tonumber(ARGV[i + 6])
  local job = job_key(id)
  local f = redis.call('HMGET', job, 'state', 'n', 'queue', 'prio', 'seq')
  if f[1] == 'running' and f[2] == token then
    local q, p = f[3], tonumber(f[4])
    redis.call('ZREM', P .. 'running:' .. q, id)
    stat(q, 'running', p, -1)
    if err ~= '' then redis.call('HSET', job, 'error', err, 'tb', tb) end
    if kind == 'ok' then
      stat(q, 'succeeded', p, 1)
      if ttl > 0 then
        redis.call('HSET', job, 'state', 'succeeded', 'finished', stamp(), 'result', result)
        redis.call('PEXPIRE', job, ttl)
      else
        redis.call('DEL', job)
      end
    elseif kind == 'retry' then
      stat(q, 'failed', p, 1)
      stat(q, 'retried', p, 1)
      local seq = redis.call('INCR', P .. 'seq')
      redis.call('HINCRBY', job, 'attempt', 1)
      redis.call('HSET', job, 'seq', seq)
      if delay > 0 then
        redis.call('HSET', job, 'state', 'delayed')
        redis.call('ZADD', P .. 'delayed:' .. q, now + delay, id)
        stat(q, 'delayed', p, 1)
      else
        make_ready(id, q, p, seq)
      end
    elseif kind == 'dead' then
      stat(q, 'failed', p, 1)
      stat(q, 'dead_lettered', p, 1)
      stat(q, 'dead', p, 1)
      redis.call('HSET', job, 'state', 'dead', 'finished', stamp())
      redis.call('ZADD', P .. 'dead:' .. q, now, id)
    else
      make_ready(id, q, p, tonumber(f[5]))
    end
    applied = applied + 1
  end
end
return applied
"""
)

# ARGV: P, visibility ms, then id, delivery number pairs.
_EXTEND = (
    _COMMON
    + """
local deadline = now_ms() + tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  local f = redis.call('HMGET', job_key(ARGV[i]), 'state', 'n', 'queue')
  if f[1] == 'running' and f[2] == ARGV[i + 1] then
    redis.call('ZADD', P .. 'running:' .. f[3], 'XX', deadline, ARGV[i])
  end
end
return 1
"""
)

# ARGV: P, id, result ttl ms
_CANCEL = (
    _COMMON
    + """
local id, ttl = ARGV[2], tonumber(ARGV[3])
local job = job_key(id)
local f = redis.call('HMGET', job, 'state', 'queue', 'prio')
if f[1] == 'queued' then
  redis.call('ZREM', ready_key(f[2], f[3]), id)
elseif f[1] == 'delayed' then
  redis.call('ZREM', P .. 'delayed:' .. f[2], id)
  stat(f[2], 'delayed', f[3], -1)
else
  return 0
end
stat(f[2], 'cancelled', f[3], 1)
if ttl > 0 then
  redis.call('HSET', job, 'state', 'cancelled', 'finished', stamp())
  redis.call('PEXPIRE', job, ttl)
else
  redis.call('DEL', job)
end
return 1
"""
)

# ARGV: P, queue ('' for any), limit, ids... (none: the oldest dead tasks of the queue)
_REDRIVE = (
    _COMMON
    + """
local q, limit = ARGV[2], tonumber(ARGV[3])
local ids = {}
if #ARGV > 3 then
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', P .. 'dead:' .. q, 0, limit - 1)
end
local moved = 0
for _, id in ipairs(ids) do
  local job = job_key(id)
  local f = redis.call('HMGET', job, 'state', 'queue', 'prio')
  if f[1] == 'dead' and (q == '' or f[2] == q) then
    redis.call('ZREM', P .. 'dead:' .. f[2], id)
    stat(f[2], 'dead', f[3], -1)
    stat(f[2], 'redriven', f[3], 1)
    local seq = redis.call('INCR', P .. 'seq')
    redis.call('HSET', job, 'attempt', 1, 'seq', seq, 'finished', '', 'lapsed', 0)
    make_ready(id, f[2], tonumber(f[3]), seq)
    moved = moved + 1
  end
end
return moved
"""
)

# ARGV: P, queue, target (queued | delayed | dead), limit
_PURGE = (
    _COMMON
    + """
local q, target, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local removed = 0
local function drop(key, id, gauge)
  if gauge then
    local p = redis.call('HGET', job_key(id), 'prio')
    if p then stat(q, gauge, p, -1) end
  end
  redis.call('ZREM', key, id)
  redis.call('DEL', job_key(id))
  removed = removed + 1
end
if target == 'queued' then
  for p = 0, 9 do
    if removed >= limit then break end
    local key = ready_key(q, p)
    for _, id in ipairs(redis.call('ZRANGE', key, 0, limit - removed - 1)) do
      drop(key, id, nil)
    end
  end
else
  local key = P .. target .. ':' .. q
  for _, id in ipairs(redis.call('ZRANGE', key, 0, limit - 1)) do drop(key, id, target) end
end
return removed
"""
)

_SCRIPTS = {
    "enqueue": _ENQUEUE,
    "claim": _CLAIM,
    "finish": _FINISH,
    "extend": _EXTEND,
    "cancel": _CANCEL,
    "redrive": _REDRIVE,
    "purge": _PURGE,
}
_INFO_FIELDS = [
    "msg",
    "state",
    "attempt",
    "enq",
    "started",
    "finished",
    "error",
    "tb",
    "result",
    "queue",
    "prio",
]


class RedisBroker:
    """Tasks in Redis for worker processes; see the module docstring.

    Clients are created on first use from ``redis`` (the ``redis`` section);
    call :meth:`reserve_connections` before that to size the pool for a
    worker's slots.
    """

    def __init__(self, settings: WorkerSettings, redis_settings: RedisSettings | None) -> None:
        if redis_settings is None:
            raise ConfigError(
                f"worker.strategy is {settings.strategy!r} but the settings have no `redis:` "
                "section saying where Redis is; add one (an empty `redis:` means 127.0.0.1:6379)"
            )
        require("redis", "redis")
        self.settings = settings
        self.redis_settings = redis_settings
        self.prefix = "{" + settings.namespace + "}:"
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._async_clients: dict[int, tuple[redis.asyncio.Redis, dict[str, Any]]] = {}
        self._scripts: dict[str, Any] = {}
        self._connections = redis_settings.max_connections
        self._next_due = 0.0
        self._script_texts = _SCRIPTS

    def __repr__(self) -> str:
        return f"<RedisBroker namespace={self.settings.namespace!r}>"

    def reserve_connections(self, count: int) -> None:
        """Make the sync pool hold at least ``count`` connections (before first use)."""
        with self._lock:
            self._connections = max(self._connections, count)
            client = self._client
            if client is not None and client.connection_pool.max_connections < count:
                self._client = None  # the next call builds a bigger pool
            else:
                client = None
        if client is not None:
            client.close()

    # -- producers ---------------------------------------------------------------------
    def enqueue(
        self, message: TaskMessage, *, delay: float = 0.0, tick: Tick | None = None
    ) -> tuple[str, bool]:
        """See :meth:`Broker.enqueue`."""
        created, task_id = self._run("enqueue", self._enqueue_args(message, delay, tick))
        return _text(task_id), bool(created)

    async def aenqueue(
        self, message: TaskMessage, *, delay: float = 0.0, tick: Tick | None = None
    ) -> tuple[str, bool]:
        """Async twin of :meth:`enqueue`."""
        created, task_id = await self._arun("enqueue", self._enqueue_args(message, delay, tick))
        return _text(task_id), bool(created)

    def enqueue_many(
        self, messages: Sequence[TaskMessage], *, delay: float = 0.0
    ) -> list[tuple[str, bool]]:
        """The ``enqueue`` script for each message, pipelined 500 at a time."""
        out: list[tuple[str, bool]] = []
        for start in range(0, len(messages), 500):
            calls = [
                ("enqueue", self._enqueue_args(message, delay, None))
                for message in messages[start : start + 500]
            ]
            replies = self._pipelined(calls)
            out += [(_text(task_id), bool(created)) for created, task_id in replies]
        return out

    def info(self, task_id: str) -> TaskInfo | None:
        """See :meth:`Broker.info`."""
        values = self._call(lambda c: c.hmget(self._job(task_id), _INFO_FIELDS))
        return _info(task_id, values)

    async def ainfo(self, task_id: str) -> TaskInfo | None:
        """Async twin of :meth:`info`."""
        client, _scripts = await self._aclient()
        try:
            values = await cast(Any, client).hmget(self._job(task_id), _INFO_FIELDS)
        except _redis_errors() as exc:
            raise _failed("HMGET", exc) from exc
        return _info(task_id, values)

    def wait_finished(self, task_id: str, timeout: float) -> TaskInfo | None:
        """Poll the record with a growing pause until it is finished or ``timeout``."""
        deadline = time.monotonic() + timeout
        pause = 0.002
        while True:
            found = self.info(task_id)
            if found is None or found.state.finished or time.monotonic() >= deadline:
                return found
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.1)

    def cancel(self, task_id: str) -> bool:
        """See :meth:`Broker.cancel`."""
        return bool(self._run("cancel", [task_id, self._ms(self.settings.result_ttl)]))

    async def acancel(self, task_id: str) -> bool:
        """Async twin of :meth:`cancel`."""
        return bool(await self._arun("cancel", [task_id, self._ms(self.settings.result_ttl)]))

    # -- workers -----------------------------------------------------------------------
    def exchange(
        self,
        finished: Sequence[tuple[Delivery, Outcome]],
        queues: Sequence[str],
        count: int,
        consumer: str,
    ) -> list[Delivery]:
        """One round trip: the ``finish`` script (if any outcomes), then ``claim``."""
        claim_args = [
            count,
            consumer,
            self._ms(self.settings.visibility_timeout),
            self.settings.starvation_limit,
            self.settings.max_deliveries,
            *queues,
        ]
        calls = [("finish", self._finish_args(finished))] if finished else []
        *_applied, claimed = self._pipelined([*calls, ("claim", claim_args)])
        return self._deliveries(claimed)

    def extend(self, deliveries: Sequence[Delivery]) -> None:
        """See :meth:`Broker.extend`."""
        if not deliveries:
            return
        args: list[Any] = [self._ms(self.settings.visibility_timeout)]
        for delivery in deliveries:
            args += [delivery.id, delivery.token]
        self._run("extend", args)

    def wait(self, queues: Sequence[str], timeout: float, consumer: str) -> None:
        """BLPOP the queues' wake lists (and this worker's own) until work may be ready."""
        until_due = self._next_due - time.monotonic()
        limit = max(0.01, min(timeout, until_due if until_due > 0 else timeout))
        limit = min(limit, max(0.01, self.redis_settings.socket_timeout - 0.5))
        keys = [self.prefix + "wake:" + queue for queue in queues]
        keys.append(self.prefix + "wake:worker:" + consumer)
        self._call(lambda c: c.blpop(keys, timeout=limit))

    def wake(self, consumer: str, count: int) -> None:
        """See :meth:`Broker.wake`."""
        key = self.prefix + "wake:worker:" + consumer

        def push(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.rpush(key, *(["1"] * max(1, count)))
            pipe.pexpire(key, 60_000)
            pipe.execute()

        self._call(push)

    def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """See :meth:`Broker.heartbeat`."""

        def beat(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.set(self.prefix + "worker:" + info.id, info.to_json(), px=self._ms(ttl))
            pipe.zadd(self.prefix + "workers", {info.id: info.beat_at.timestamp()})
            pipe.execute()

        self._call(beat)

    def forget_worker(self, worker_id: str) -> None:
        """See :meth:`Broker.forget_worker`."""

        def forget(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.delete(self.prefix + "worker:" + worker_id, self.prefix + "skips:" + worker_id)
            pipe.delete(self.prefix + "wake:worker:" + worker_id)
            pipe.zrem(self.prefix + "workers", worker_id)
            pipe.execute()

        self._call(forget)

    def last_tick(self, schedule: str) -> int | None:
        """See :meth:`Broker.last_tick`."""
        value = self._call(lambda c: c.hget(self.prefix + "ticks", schedule))
        return None if value is None else int(value)

    # -- operations --------------------------------------------------------------------
    def workers(self) -> list[WorkerInfo]:
        """See :meth:`Broker.workers`; stale entries are dropped from the index."""

        def read(client: Any) -> list[WorkerInfo]:
            ids = [_text(i) for i in client.zrange(self.prefix + "workers", 0, -1)]
            if not ids:
                return []
            beats = client.mget([self.prefix + "worker:" + i for i in ids])
            stale = [i for i, beat in zip(ids, beats, strict=True) if beat is None]
            if stale:
                client.zrem(self.prefix + "workers", *stale)
            return [WorkerInfo.from_json(beat) for beat in beats if beat is not None]

        found: list[WorkerInfo] = self._call(read)
        return found

    def stats(self) -> list[QueueStats]:
        """See :meth:`Broker.stats`."""

        def read(client: Any) -> list[QueueStats]:
            queues = sorted(_text(q) for q in client.smembers(self.prefix + "queues"))
            pipe = client.pipeline(transaction=False)
            for queue in queues:
                pipe.hgetall(self.prefix + "stats:" + queue)
                for priority in PRIORITY_LEVELS:
                    pipe.zcard(f"{self.prefix}ready:{queue}:{priority}")
            replies = iter(pipe.execute())
            rows = []
            for queue in queues:
                counters = {_text(k): int(v) for k, v in next(replies).items()}
                for priority in PRIORITY_LEVELS:
                    queued = int(next(replies))
                    values = {
                        name: counters.get(f"{name}:{priority}", 0) for name in COUNTERS + GAUGES
                    }
                    if queued or any(values.values()):
                        rows.append(
                            QueueStats(queue=queue, priority=priority, queued=queued, **values)
                        )
            return rows

        rows: list[QueueStats] = self._call(read)
        return rows

    def dead_letters(self, queue: str | None, limit: int, offset: int = 0) -> list[TaskInfo]:
        """See :meth:`Broker.dead_letters`."""

        def read(client: Any) -> list[TaskInfo]:
            names = [queue] if queue is not None else self.queues()
            ids: list[str] = []
            for name in names:
                ids += [_text(i) for i in client.zrange(self.prefix + "dead:" + name, 0, -1)]
            chosen = ids[offset : offset + limit]
            pipe = client.pipeline(transaction=False)
            for task_id in chosen:
                pipe.hmget(self._job(task_id), _INFO_FIELDS)
            found = [_info(i, v) for i, v in zip(chosen, pipe.execute(), strict=True)]
            return [info for info in found if info is not None]

        letters: list[TaskInfo] = self._call(read)
        return letters

    def count(self, queue: str, target: PurgeTarget) -> int:
        """See :meth:`Broker.count`."""

        def read(client: Any) -> int:
            if target != "queued":
                return int(client.zcard(f"{self.prefix}{target}:{queue}"))
            pipe = client.pipeline(transaction=False)
            for priority in PRIORITY_LEVELS:
                pipe.zcard(f"{self.prefix}ready:{queue}:{priority}")
            return sum(int(n) for n in pipe.execute())

        return int(self._call(read))

    def redrive(self, queue: str | None, ids: Sequence[str] | None, limit: int) -> int:
        """See :meth:`Broker.redrive`."""
        return int(self._run("redrive", [queue or "", limit, *(ids or ())]))

    def purge(self, queue: str, target: PurgeTarget, limit: int) -> int:
        """See :meth:`Broker.purge`."""
        return int(self._run("purge", [queue, target, limit]))

    def queues(self) -> list[str]:
        """See :meth:`Broker.queues`."""
        return sorted(_text(q) for q in self._call(lambda c: c.smembers(self.prefix + "queues")))

    def ping(self) -> None:
        """PING Redis; CacheError when it does not answer."""
        client, _scripts = self._sync()
        ping(client)

    async def aping(self) -> None:
        """Async twin of :meth:`ping`."""
        client, _scripts = await self._aclient()
        await aping(client)

    def close(self) -> None:
        """Close the sync client (async clients need :meth:`aclose`); twice is harmless."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close every client."""
        self.close()
        loop = asyncio.get_running_loop()
        entry = self._async_clients.pop(id(loop), None)
        if entry is not None:
            await entry[0].aclose()

    # -- internals -----------------------------------------------------------------------
    def _sync(self) -> tuple[redis.Redis, dict[str, Any]]:
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    sized = self.redis_settings.model_copy(
                        update={"max_connections": self._connections}
                    )
                    client = create_client(sized)
                    self._scripts = {
                        name: client.register_script(text)
                        for name, text in self._script_texts.items()
                    }
                    self._client = client
        return client, self._scripts

    async def _aclient(self) -> tuple[redis.asyncio.Redis, dict[str, Any]]:
        # An asyncio client belongs to the loop it was created on: one per loop.
        loop = asyncio.get_running_loop()
        entry = self._async_clients.get(id(loop))
        if entry is None:
            client = create_async_client(self.redis_settings)
            scripts = {
                name: client.register_script(text) for name, text in self._script_texts.items()
            }
            entry = self._async_clients[id(loop)] = (client, scripts)
        return entry

    def _pipelined(
        self, calls: Sequence[tuple[str, Sequence[Any]]], extra: Sequence[Sequence[Any]] = ()
    ) -> list[Any]:
        """Run scripts (then ``extra`` plain commands) in one round trip; the scripts' replies.

        redis-py's pipelined ``Script`` calls ask ``SCRIPT EXISTS`` before every
        execute, a second round trip; these go as bare ``EVALSHA``. The first
        time, or should Redis have lost the scripts (a restart, ``SCRIPT
        FLUSH``), the calls refused with NOSCRIPT (none of them ran) are sent
        again once the scripts are loaded.
        """
        client, scripts = self._sync()
        results = self._execute(client, calls, extra)
        replies = results[: len(calls)]
        noscript = require("redis.exceptions", "redis").NoScriptError
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, noscript)]
        if missing:
            try:
                for script in scripts.values():
                    client.script_load(script.script)
            except _redis_errors() as exc:
                raise _failed("SCRIPT LOAD", exc) from exc
            again = self._execute(client, [calls[i] for i in missing], ())
            for index, reply in zip(missing, again, strict=True):
                replies[index] = reply
        names = [name for name, _args in calls] + ["pipeline"] * len(extra)
        for name, reply in zip(names, replies + results[len(calls) :], strict=True):
            if isinstance(reply, Exception):
                raise _failed(name, reply) from reply
        return replies

    def _execute(
        self,
        client: redis.Redis,
        calls: Sequence[tuple[str, Sequence[Any]]],
        extra: Sequence[Sequence[Any]],
    ) -> list[Any]:
        pipe: Any = client.pipeline(transaction=False)
        key = self.prefix + "seq"
        for name, args in calls:
            pipe.evalsha(self._scripts[name].sha, 1, key, self.prefix, *args)
        for command in extra:
            pipe.execute_command(*command)
        try:
            return list(pipe.execute(raise_on_error=False))
        except _redis_errors() as exc:
            raise _failed(calls[0][0] if calls else "pipeline", exc) from exc

    def _run(self, script: str, args: Sequence[Any]) -> Any:
        _client, scripts = self._sync()
        try:
            return scripts[script]([self.prefix + "seq"], [self.prefix, *args])
        except _redis_errors() as exc:
            raise _failed(script, exc) from exc

    async def _arun(self, script: str, args: Sequence[Any]) -> Any:
        _client, scripts = await self._aclient()
        try:
            return await scripts[script]([self.prefix + "seq"], [self.prefix, *args])
        except _redis_errors() as exc:
            raise _failed(script, exc) from exc

    def _call(self, fn: Any) -> Any:
        client, _scripts = self._sync()
        try:
            return fn(client)
        except _redis_errors() as exc:
            raise _failed(getattr(fn, "__name__", "command"), exc) from exc

    def _enqueue_args(self, message: TaskMessage, delay: float, tick: Tick | None) -> list[Any]:
        return [
            message.id,
            message.queue,
            message.priority,
            message.encode(),
            self._ms(delay),
            message.idempotency_key or "",
            self._ms(self.settings.idempotency_ttl),
            tick.schedule if tick is not None else "",
            tick.at_ms if tick is not None else 0,
        ]

    def _finish_args(self, finished: Sequence[tuple[Delivery, Outcome]]) -> list[Any]:
        args: list[Any] = [self._ms(self.settings.result_ttl)]
        for delivery, outcome in finished:
            args += [
                delivery.id,
                delivery.token,
                outcome.kind,
                outcome.result or "",
                outcome.error or "",
                outcome.traceback or "",
                self._ms(outcome.delay),
            ]
        return args

    def _deliveries(self, claimed: list[Any]) -> list[Delivery]:
        self._note_due(int(claimed[0]))
        return self._rows_to_deliveries(claimed[1:])

    def _note_due(self, next_due_ms: int) -> None:
        """Remember when the next delayed task or lease falls due (-1: none), for :meth:`wait`."""
        self._next_due = time.monotonic() + next_due_ms / 1000 if next_due_ms >= 0 else 0.0

    @staticmethod
    def _rows_to_deliveries(rows: Sequence[Any]) -> list[Delivery]:
        out = []
        for task_id, raw, attempt, number, enqueued in rows:
            problem = None
            try:
                message = TaskMessage.decode(raw)
            except MessagingError as exc:  # written by something else: record, do not crash
                problem = f"the stored task envelope is not valid: {exc}"
                message = TaskMessage(type="?", source=TASK_SOURCE)
            out.append(
                Delivery(
                    id=_text(task_id),
                    message=message,
                    attempt=int(attempt),
                    token=str(int(number)),
                    enqueued_ms=round(float(enqueued) * 1000),
                    problem=problem,
                )
            )
        return out

    def _job(self, task_id: str) -> str:
        return self.prefix + "job:" + task_id

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(0, round(seconds * 1000))


def _info(task_id: str, values: list[bytes | None]) -> TaskInfo | None:
    raw, state, attempt, enqueued, started, finished, error, tb, result, queue, prio = values
    if raw is None:
        return None
    try:
        message = TaskMessage.decode(raw)
    except MessagingError:  # an envelope written by something else: show what is known
        message = TaskMessage(type="?", source=TASK_SOURCE)
    return TaskInfo(
        id=task_id,
        name=message.type,
        queue=_text(queue) if queue else message.queue,
        priority=int(prio) if prio else message.priority,
        state=TaskState(_text(state)) if state else TaskState.UNKNOWN,
        attempt=int(attempt or 1),
        enqueued_at=from_seconds(enqueued),
        started_at=from_seconds(started),
        finished_at=from_seconds(finished),
        error=_text(error) if error else None,
        traceback=_text(tb) if tb else None,
        result_json=_text(result) if result is not None else None,
        args=message.args,
        kwargs=message.kwargs,
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _redis_errors() -> tuple[type[BaseException], ...]:
    redis_module = require("redis", "redis")
    return (redis_module.RedisError, OSError)


def _failed(what: str, exc: BaseException) -> CacheError:
    return CacheError(f"worker broker: Redis {what} failed: {type(exc).__name__}: {exc}")
