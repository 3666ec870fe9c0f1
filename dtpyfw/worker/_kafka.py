"""The ``kafka`` strategy: tasks travel on Kafka topics, their state lives in Redis.

**Topics.** A queue has three topics, one per priority band::

    {namespace}.tasks.{queue}.high      priorities 7-9
    {namespace}.tasks.{queue}.normal    priorities 4-6
    {namespace}.tasks.{queue}.low       priorities 0-3

created on first use with ``worker.partitions`` partitions each (a broker
without the admin API auto-creates them). Every worker process joins one
consumer group, ``{namespace}.workers``, subscribed to the topics of the
queues it serves: Kafka spreads the partitions, and so the load, over the
processes. A record is only a pointer (``{"id", "priority", "at"}``, ``at``
the epoch milliseconds it became ready); the task's
envelope, state, attempts, result and counters are the Redis strategy's
records (:mod:`dtpyfw.worker._redis`), so ``handle.result()``,
``dtpyfw worker stats|dlq`` and cancellation work the same. Delays, retry
backoff, leases and the dead-letter queue are in Redis too: Kafka has no
delayed delivery and no per-record acknowledgement.

**Never lost, never run twice at once.** A task becomes ready in one Lua
step that also adds it to an *outbox* in Redis; it leaves the outbox only
once Kafka acknowledged its record. An enqueuer sends the record itself;
any record not acknowledged within ``visibility_timeout`` (the enqueuer
crashed, the broker refused) is sent again by a worker, which also sends
the records of retries, delayed tasks that fell due, re-driven and
redelivered tasks. A worker *takes* a task in one Lua step that succeeds
only while the task is ``queued``, so a record sent twice, or read again
after a rebalance, runs the task once; the other copy is skipped. Offsets
are committed up to the first record of each partition not yet taken or
skipped, so records a worker read but had not started go to the next owner
of the partition if it dies. A task taken by a worker that dies is
redelivered when its lease (``visibility_timeout``) lapses, exactly as in
the Redis strategy.

**Priority.** A worker picks among the records it has read by the rule
every broker uses (:func:`~dtpyfw.worker._broker.choose`). Before it takes
a task of a lower band, the take step checks in Redis that no task of a
higher band of the same queue is waiting; if one is (read by another
worker, or not yet fetched), the record stays in the worker's buffer and it
looks again at its next poll. So workers drain higher bands first across
the whole group. Each such refusal counts as passing the task over: after
``starvation_limit`` refusals in a row the worker takes it anyway
(``starvation_limit: 0`` never does). Within a band, each partition is
first in, first out. A worker pauses partitions it holds more than
``_BUFFER_CAP`` unread records of, so a flood of low-priority records
never keeps high-priority ones from being fetched.
"""

from __future__ import annotations

__all__ = ["KafkaBroker", "band_of", "topic_for"]

import asyncio
import collections
import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from dtpyfw.core._extras import require
from dtpyfw.core.errors import CacheError, ConfigError, MessagingError
from dtpyfw.kafka._admin import ensure_topics
from dtpyfw.kafka._consumer import Consumer, TopicPartition
from dtpyfw.kafka._producer import Producer, PublishFuture
from dtpyfw.kafka._settings import KafkaSettings
from dtpyfw.redis._settings import RedisSettings
from dtpyfw.worker._broker import Head, Tick, choose
from dtpyfw.worker._records import Delivery, Outcome, TaskMessage
from dtpyfw.worker._redis import _COMMON, _SCRIPTS, RedisBroker, _text
from dtpyfw.worker._settings import WorkerSettings

logger = logging.getLogger("dtpyfw.worker")

#: Bands, highest first: (name, lowest priority in it).
_BANDS = (("high", 7), ("normal", 4), ("low", 0))
#: Unread records a worker keeps per partition before it pauses the partition.
_BUFFER_CAP = 256
#: Longest single poll, seconds: bounds how late a stopping worker notices.
_MAX_POLL = 0.5
#: Outbox entries one worker sends per exchange.
_HANDOFF_BATCH = 500

# A task that becomes ready also goes to the outbox, as "<id>:<readiness number>" (the
# number tells apart two readinesses of one task, so the acknowledgement of an old record
# never removes the entry of a new one). Its score is when a worker should send it: at
# once, or (for enqueue, whose caller sends the record itself) after the hand-off time.
_READY_TO_OUTBOX = """
local function make_ready(id, q, p, seq)
  redis.call('ZADD', ready_key(q, p), seq, id)
  local r = redis.call('HINCRBY', job_key(id), 'r', 1)
  redis.call('HSET', job_key(id), 'state', 'queued')
  redis.call('ZADD', P .. 'outbox', now_ms() + HANDOFF, id .. ':' .. r)
end
"""

# ARGV: P, hand-off ms, limit. Returns {member, queue, priority} of due outbox entries
# (rescheduled one hand-off later, in case this sender dies before Kafka acknowledges).
_HANDOFF = (
    _COMMON
    + """
local handoff, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local out = {}
local outbox = P .. 'outbox'
for _, member in ipairs(redis.call('ZRANGEBYSCORE', outbox, '-inf', now, 'LIMIT', 0, limit)) do
  local id = string.match(member, '^(.*):%d+$')
  local f = redis.call('HMGET', job_key(id), 'state', 'queue', 'prio', 'r')
  if f[1] == 'queued' and member == id .. ':' .. (f[4] or '') then
    redis.call('ZADD', outbox, now + handoff, member)
    out[#out + 1] = {member, f[2], f[3]}
  else
    redis.call('ZREM', outbox, member)  -- taken, cancelled, purged or readied again since
  end
end
return out
"""
)

# ARGV: P, consumer, visibility ms, id, lowest priority that blocks the take (10: none).
# Returns {-1} blocked by a waiting task of a higher band, {0} not queued (skip the
# record), or {1, {id, envelope, attempt, delivery number, enqueued}}.
_TAKE = (
    _COMMON
    + """
local consumer, visibility, id, floor = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local job = job_key(id)
local f = redis.call('HMGET', job, 'state', 'queue', 'prio', 'msg', 'attempt', 'enq')
if f[1] ~= 'queued' then return {0} end
local q = f[2]
for p = floor, 9 do
  if redis.call('ZCARD', ready_key(q, p)) > 0 then return {-1} end
end
redis.call('ZREM', ready_key(q, f[3]), id)
local n = redis.call('HINCRBY', job, 'n', 1)
redis.call('HSET', job, 'state', 'running', 'started', stamp(), 'worker', consumer)
redis.call('ZADD', P .. 'running:' .. q, now_ms() + visibility, id)
stat(q, 'running', f[3], 1)
return {1, {id, f[4], f[5], n, f[6]}}
"""
)


def band_of(priority: int) -> tuple[str, int]:
    """The band of ``priority``: its name and the lowest priority of the band above (10: none)."""
    above = 10
    for name, lowest in _BANDS:
        if priority >= lowest:
            return name, above
        above = lowest
    raise ValueError(f"priority {priority} is not 0-9")


def topic_for(namespace: str, queue: str, priority: int) -> str:
    """The topic that carries tasks of ``queue`` at ``priority``."""
    return _topic(namespace, queue, band_of(priority)[0])


def _topic(namespace: str, queue: str, band: str) -> str:
    return f"{namespace}.tasks.{queue}.{band}"


def _scripts(handoff_ms: int) -> dict[str, str]:
    def variant(text: str, handoff: int) -> str:
        ready = f"local HANDOFF = {handoff}\n{_READY_TO_OUTBOX}"
        return text.replace(_COMMON, _COMMON + ready, 1)

    texts = {name: variant(text, 0) for name, text in _SCRIPTS.items()}
    texts["enqueue"] = variant(_SCRIPTS["enqueue"], handoff_ms)
    texts["handoff"] = _HANDOFF
    texts["take"] = _TAKE
    return texts


class _Record:
    """A record read from Kafka and not yet taken or skipped."""

    __slots__ = ("offset", "priority", "ready_ms", "task_id")

    def __init__(self, task_id: str, priority: int, offset: int, ready_ms: int) -> None:
        self.task_id = task_id
        self.priority = priority
        self.offset = offset
        self.ready_ms = ready_ms


class KafkaBroker(RedisBroker):
    """Tasks on Kafka topics, their records in Redis; see the module docstring."""

    def __init__(
        self,
        settings: WorkerSettings,
        redis_settings: RedisSettings | None,
        kafka_settings: KafkaSettings | None,
    ) -> None:
        if kafka_settings is None:
            raise ConfigError(
                "worker.strategy is 'kafka' but the settings have no `kafka:` section saying "
                "where the brokers are; add one (e.g. `kafka: {bootstrap_servers: [host:9092]}`)"
            )
        super().__init__(settings, redis_settings)
        require("kafka", "kafka")
        self.kafka_settings = kafka_settings
        self.group = f"{settings.namespace}.workers"
        self._handoff_ms = self._ms(settings.visibility_timeout)
        self._script_texts = _scripts(self._handoff_ms)
        self._producer = Producer(kafka_settings)
        self._consumer: Consumer | None = None
        self._subscribed: tuple[str, ...] = ()  # the queues whose topics are subscribed
        self._topics: set[str] = set()
        self._topics_lock = threading.Lock()
        # _poll_lock: the consumer (kafka-python's is not thread-safe). _cond: the buffers.
        # Order: _poll_lock, then _cond; a holder of _cond only ever *tries* _poll_lock.
        self._poll_lock = threading.Lock()
        self._cond = threading.Condition()
        self._buffers: dict[TopicPartition, collections.deque[_Record]] = {}
        self._inflight: dict[TopicPartition, set[int]] = {}
        self._next_offset: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._blocked = False
        self._skips = 0
        self._refusals = 0
        self._last_commit = 0.0
        self._last_poll = time.monotonic()
        self._acked: list[str] = []
        self._acked_lock = threading.Lock()
        self._ack_ready = threading.Event()
        self._ack_thread: threading.Thread | None = None
        self._closing = False

    def __repr__(self) -> str:
        return f"<KafkaBroker namespace={self.settings.namespace!r}>"

    # -- producers ---------------------------------------------------------------------
    def enqueue(
        self, message: TaskMessage, *, delay: float = 0.0, tick: Tick | None = None
    ) -> tuple[str, bool]:
        """The Redis ``enqueue`` step, then the record (its outbox entry waits for the ack)."""
        created, task_id = self._run("enqueue", self._enqueue_args(message, delay, tick))
        if created and delay <= 0:
            self._send([(f"{_text(task_id)}:1", message.queue, message.priority)])
        return _text(task_id), bool(created)

    async def aenqueue(
        self, message: TaskMessage, *, delay: float = 0.0, tick: Tick | None = None
    ) -> tuple[str, bool]:
        """Async twin of :meth:`enqueue`; the send (it may wait for metadata) runs in a thread."""
        created, task_id = await self._arun("enqueue", self._enqueue_args(message, delay, tick))
        if created and delay <= 0:
            entry = (f"{_text(task_id)}:1", message.queue, message.priority)
            await asyncio.to_thread(self._send, [entry])
        return _text(task_id), bool(created)

    def enqueue_many(
        self, messages: Sequence[TaskMessage], *, delay: float = 0.0
    ) -> list[tuple[str, bool]]:
        """The Redis steps pipelined (as the Redis strategy does), then the records."""
        out = super().enqueue_many(messages, delay=delay)
        if delay <= 0:
            self._send(
                [
                    (f"{task_id}:1", message.queue, message.priority)
                    for message, (task_id, created) in zip(messages, out, strict=True)
                    if created
                ]
            )
        return out

    # -- workers -----------------------------------------------------------------------
    def exchange(
        self,
        finished: Sequence[tuple[Delivery, Outcome]],
        queues: Sequence[str],
        count: int,
        consumer: str,
    ) -> list[Delivery]:
        """Record outcomes, promote due tasks, send the outbox, then take from the buffer."""
        visibility = self._ms(self.settings.visibility_timeout)
        calls: list[tuple[str, Sequence[Any]]] = (
            [("finish", self._finish_args(finished))] if finished else []
        )
        # The claim script with count 0 only moves due delayed tasks and lapsed leases.
        sweep = [
            0,
            consumer,
            visibility,
            self.settings.starvation_limit,
            self.settings.max_deliveries,
            *queues,
        ]
        calls += [("claim", sweep), ("handoff", [self._handoff_ms, _HANDOFF_BATCH])]
        *_applied, swept, due = self._pipelined(calls)
        self._note_due(int(swept[0]))
        self._send([(_text(m), _text(q), int(p)) for m, q, p in due])
        if count <= 0:
            return []
        self._subscribe(queues)
        return self._take(count, consumer)

    def extend(self, deliveries: Sequence[Delivery]) -> None:
        """Renew leases; also poll if no slot did lately, so the group keeps this member."""
        super().extend(deliveries)
        limit = self.kafka_settings.consumer.max_poll_interval / 3
        if self._consumer is not None and time.monotonic() - self._last_poll > limit:
            self._poll(0.0, blocking=False)

    def wait(self, queues: Sequence[str], timeout: float, consumer: str) -> None:
        """Poll Kafka until records arrive, a delayed task falls due or ``timeout``."""
        with self._cond:
            if any(self._buffers.values()) and not self._blocked:
                return
        until_due = self._next_due - time.monotonic()
        limit = min(timeout, until_due) if until_due > 0 else timeout
        self._subscribe(queues)
        self._poll(max(0.01, min(limit, _MAX_POLL)), blocking=True)

    def wake(self, consumer: str, count: int) -> None:
        """Waiting slots poll for at most half a second: nothing to interrupt."""

    # -- operations --------------------------------------------------------------------
    def ping(self) -> None:
        """Ping Redis and a Kafka broker; CacheError or MessagingError when one is down."""
        super().ping()
        self._producer.ping()

    async def aping(self) -> None:
        """Async twin of :meth:`ping`."""
        await super().aping()
        await asyncio.to_thread(self._producer.ping)

    def close(self) -> None:
        """Send what waits, commit what was handled, leave the group; twice is harmless."""
        with contextlib.suppress(MessagingError):
            self._producer.flush(timeout=self.kafka_settings.producer.confirm_timeout)
        with self._poll_lock:
            consumer, self._consumer = self._consumer, None
            if consumer is not None:
                try:
                    self._commit(consumer, force=True)
                finally:
                    consumer.close()
        with self._acked_lock:
            self._closing = True
            thread = self._ack_thread
        self._ack_ready.set()
        if thread is not None:
            thread.join(timeout=5)
        self._drop_acked()
        self._producer.close()
        super().close()

    # -- internals -----------------------------------------------------------------------
    def _topics_of(self, queue: str) -> list[str]:
        return [_topic(self.settings.namespace, queue, band) for band, _ in _BANDS]

    def _ensure(self, topics: Sequence[str]) -> None:
        missing = [t for t in topics if t not in self._topics]
        if not missing:
            return
        with self._topics_lock:
            missing = [t for t in missing if t not in self._topics]
            if missing:
                ensure_topics(self.kafka_settings, missing, partitions=self.settings.partitions)
                self._topics.update(missing)

    def _send(self, entries: Sequence[tuple[str, str, int]]) -> None:
        """Send one record per outbox entry; the ack queues the entry for removal."""
        if not entries:
            return
        self._ensure([t for _m, queue, _p in entries for t in self._topics_of(queue)])
        # When it became ready, for the starvation rule's "older" (brokers before 0.10
        # keep no record timestamps, and a broker's clock is not the enqueuer's).
        now_ms = time.time_ns() // 1_000_000
        for member, queue, priority in entries:
            task_id = member.rpartition(":")[0]
            value = json.dumps({"id": task_id, "priority": priority, "at": now_ms}).encode()
            topic = topic_for(self.settings.namespace, queue, priority)
            try:
                future = self._producer.publish_nowait(topic, value)
            except MessagingError as exc:  # the outbox sends it again after the hand-off
                logger.warning("worker: sending task %s to %s failed: %s", task_id, topic, exc)
                continue
            future.add_done_callback(functools.partial(self._on_ack, member))

    def _on_ack(self, member: str, done: PublishFuture) -> None:
        """In kafka-python's I/O thread: queue the entry for removal by the ack thread."""
        try:
            done.result(0)
        except MessagingError as exc:
            logger.warning("worker: Kafka refused task record %s (resent later): %s", member, exc)
            return
        with self._acked_lock:
            self._acked.append(member)
            thread = None
            if self._ack_thread is None and not self._closing:
                thread = self._ack_thread = threading.Thread(
                    target=self._ack_loop, name="dtpyfw-worker-outbox", daemon=True
                )
        self._ack_ready.set()
        if thread is not None:
            thread.start()

    def _ack_loop(self) -> None:
        """Remove acknowledged records' outbox entries as they come, in batches.

        Its own thread, so that an enqueuer that goes quiet (or only uses the
        async twins) does not leave entries a worker would send again.
        """
        while True:
            self._ack_ready.wait()
            self._ack_ready.clear()
            if self._closing:
                return
            self._drop_acked()

    def _drop_acked(self) -> None:
        with self._acked_lock:
            acked, self._acked = self._acked, []
        if not acked:
            return
        try:
            self._call(lambda client: client.zrem(self.prefix + "outbox", *acked))
        except CacheError as exc:  # harmless: a worker sends those records once more
            logger.warning("worker: could not clear %d outbox entries: %s", len(acked), exc)

    def _subscribe(self, queues: Sequence[str]) -> None:
        # On every exchange: compare the queue names, build topic names only on a change.
        if self._consumer is not None and tuple(queues) == self._subscribed:
            return
        self._ensure([t for queue in queues for t in self._topics_of(queue)])
        with self._poll_lock:
            if self._consumer is None:
                self._consumer = Consumer(self.kafka_settings, self.group)
            if tuple(queues) != self._subscribed:
                topics = [t for queue in queues for t in self._topics_of(queue)]
                self._consumer.subscribe(topics, on_revoke=self._on_revoke)
                self._subscribed = tuple(queues)

    def _poll(self, timeout: float, *, blocking: bool) -> None:
        if not self._poll_lock.acquire(blocking, timeout if blocking else -1):
            return
        try:
            consumer = self._consumer
            if consumer is None:
                return
            self._resume_drained(consumer)
            records = consumer.poll(timeout)
            self._last_poll = time.monotonic()
            if records:
                self._buffer(consumer, records)
            self._commit(consumer, force=False)
        finally:
            self._poll_lock.release()

    def _buffer(self, consumer: Consumer, records: Sequence[Any]) -> None:
        full: list[TopicPartition] = []
        with self._cond:
            for record in records:
                tp = TopicPartition(record.topic, record.partition)
                self._next_offset[tp] = record.offset + 1
                try:
                    body = json.loads(record.value)
                    entry = _Record(
                        str(body["id"]),
                        int(body["priority"]),
                        record.offset,
                        int(body.get("at") or record.timestamp or 0),
                    )
                except (ValueError, TypeError, KeyError) as exc:
                    logger.warning(
                        "worker: skipping a record that is not a task pointer at %s[%d]@%d: %s",
                        record.topic,
                        record.partition,
                        record.offset,
                        exc,
                    )
                    continue
                if self._hold(tp, entry) >= _BUFFER_CAP and tp not in self._paused:
                    full.append(tp)
            self._blocked = False
            self._cond.notify_all()
        if full:
            consumer.pause(full)
            self._paused.update(full)

    def _hold(self, tp: TopicPartition, record: _Record) -> int:
        """Under ``_cond``: buffer ``record`` read from ``tp``; how many wait there now."""
        self._next_offset[tp] = record.offset + 1
        queue = self._buffers.setdefault(tp, collections.deque())
        queue.append(record)
        return len(queue)

    def _resume_drained(self, consumer: Consumer) -> None:
        with self._cond:
            low = _BUFFER_CAP // 2
            drained = [tp for tp in self._paused if len(self._buffers.get(tp, ())) < low]
        if drained:
            consumer.resume(drained)
            self._paused.difference_update(drained)

    def _take(self, count: int, consumer: str) -> list[Delivery]:
        with self._cond:
            empty = not any(self._buffers.values())
        if empty:
            self._poll(0.0, blocking=False)  # only if no other slot is polling now
        out: list[Delivery] = []
        visibility = self._ms(self.settings.visibility_timeout)
        while len(out) < count:
            # The record leaves the buffer for the Redis step, so that slots take in
            # parallel; it stays "in flight" meanwhile, which holds back the commit.
            with self._cond:
                picked = self._pick()
            if picked is None:
                break
            tp, record, floor, skips = picked
            taken = self._run("take", [consumer, visibility, record.task_id, floor])
            with self._cond:
                self._inflight.get(tp, set()).discard(record.offset)
                if int(taken[0]) < 0:
                    if tp in self._next_offset:  # still ours: back to the head of the line
                        self._buffers.setdefault(tp, collections.deque()).appendleft(record)
                    self._refusals += 1
                    self._blocked = True
                    break
                if int(taken[0]) > 0:
                    self._skips, self._refusals = skips, 0
                    out += self._rows_to_deliveries([taken[1]])
        return out

    def _pick(self) -> tuple[TopicPartition, _Record, int, int] | None:
        """Under ``_cond``: the record to take next, the band floor to check, the new skips."""
        heads = [
            Head(priority=queue[0].priority, seq=queue[0].ready_ms, key=tp)
            for tp, queue in self._buffers.items()
            if queue
        ]
        limit = self.settings.starvation_limit
        pick, skips = choose(heads, self._skips, limit)
        if pick is None:
            return None
        tp = pick.key
        assert isinstance(tp, TopicPartition)
        record = self._buffers[tp].popleft()
        self._inflight.setdefault(tp, set()).add(record.offset)
        forced = pick.priority < max(h.priority for h in heads) or (
            limit > 0 and self._refusals >= limit
        )
        return tp, record, 10 if forced else band_of(record.priority)[1], skips

    def _commit(self, consumer: Consumer, *, force: bool) -> None:
        """Commit each partition up to its first record not yet taken or skipped.

        That is the lowest of: its oldest buffered record, its records in
        flight (being taken), and the next offset to read.
        """
        now = time.monotonic()
        if not force and now - self._last_commit < self.kafka_settings.consumer.commit_interval:
            return
        with self._cond:
            offsets = {}
            for tp, next_offset in self._next_offset.items():
                queue = self._buffers.get(tp)
                waiting = [next_offset, *self._inflight.get(tp, ())]
                if queue:
                    waiting.append(queue[0].offset)
                position = min(waiting)
                if self._committed.get(tp) != position:
                    offsets[tp] = position
        if not offsets:
            return
        self._last_commit = now
        try:
            consumer.commit(offsets)
        except MessagingError as exc:  # mid-rebalance: the next owner re-reads, takes skip
            logger.info("worker: offset commit refused, records will be re-read: %s", exc)
            return
        with self._cond:
            self._committed.update(offsets)

    def _on_revoke(self, partitions: set[Any]) -> None:
        """Inside poll(): commit what was handled, forget the buffered rest of ``partitions``."""
        consumer = self._consumer
        if consumer is not None:
            self._commit(consumer, force=True)
        revoked = {TopicPartition(p.topic, p.partition) for p in partitions}
        with self._cond:
            for tp in revoked:
                self._buffers.pop(tp, None)
                self._inflight.pop(tp, None)
                self._next_offset.pop(tp, None)
                self._committed.pop(tp, None)
            self._paused.difference_update(revoked)
