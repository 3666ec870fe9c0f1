"""Consumer runners: deliver what a broker holds to the bus's handlers, then stop cleanly.

:class:`Runner` serves a :class:`~dtpyfw.messaging.MessageBus` (handlers run
in a pool of ``concurrency`` threads); :class:`AsyncRunner` serves an
:class:`~dtpyfw.messaging.AsyncMessageBus` (handlers run on the event loop,
at most ``concurrency`` at once). Both run one *pump* thread per inbox (one
consumer group on one broker), because broker clients block; the event loop
never waits on a broker.

Each pump fetches up to ``batch_size`` messages, hands them out, and sends
acknowledgements as handlers finish. A message is acknowledged (Redis
``XACK``, Kafka offset commit) only after its handler succeeded, or after
it was dead-lettered. With ``max_in_flight`` messages unfinished the pump
stops fetching (Kafka: pauses its partitions) until handlers catch up.

Shutdown (``stop()``, or SIGTERM/SIGINT under ``run()``): pumps stop
fetching, handlers in flight finish (up to ``shutdown_timeout``; messages
not finished by then are left unacknowledged and will be redelivered),
acknowledgements are flushed, inboxes close (a Kafka consumer commits and
leaves its group, so its partitions move at once).

A transport that delivers in process (memory) has no inboxes: its runner
starts, idles and stops, so the same service code runs on every transport.
"""

from __future__ import annotations

__all__ = ["AsyncRunner", "Runner", "RunnerOptions"]

import asyncio
import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from dtpyfw.core.errors import MessagingError
from dtpyfw.core.retry import RetryPolicy
from dtpyfw.messaging._broker import Delivery, Inbox
from dtpyfw.messaging._bus import AsyncConsumer, AsyncMessageBus, Consumer, MessageBus
from dtpyfw.messaging._delivery import Dispatcher, Failure, log_dead_letter
from dtpyfw.messaging._message import InvalidMessage, Message

if TYPE_CHECKING:
    from dtpyfw.messaging._idempotency import IdempotencyStore
    from dtpyfw.messaging._settings import MessagingSettings

logger = logging.getLogger("dtpyfw.messaging")

# While handlers are in flight a pump reads with this short timeout, so their
# acknowledgements go out promptly instead of after a long blocking read.
_BUSY_POLL = 0.02
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 5.0
# Handler threads report finished messages to their pump in small groups, not one by one.
_DONE_EVERY = 8


class _Options:
    __slots__ = (
        "batch_size",
        "concurrency",
        "max_in_flight",
        "poll_timeout",
        "shutdown_timeout",
    )

    def __init__(
        self,
        concurrency: int,
        max_in_flight: int,
        batch_size: int,
        poll_timeout: float,
        shutdown_timeout: float,
    ) -> None:
        if concurrency < 1 or max_in_flight < 1 or batch_size < 1:
            raise ValueError("concurrency, max_in_flight and batch_size must be at least 1")
        self.concurrency = concurrency
        self.max_in_flight = max_in_flight
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.shutdown_timeout = shutdown_timeout


class _Stats:
    """Counters a runner keeps; read them as ``runner.handled`` / ``runner.dead_lettered``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.handled = 0
        self.dead_lettered = 0

    def add(self, handled: int = 0, dead_lettered: int = 0) -> None:
        with self._lock:
            self.handled += handled
            self.dead_lettered += dead_lettered


class _Pump:
    """One inbox's thread: fetch, hand out, acknowledge; drains and closes when stopped."""

    def __init__(
        self,
        inbox: Inbox,
        submit: Callable[[Inbox, list[Delivery], _Pump], None],
        options: _Options,
        stopping: threading.Event,
    ) -> None:
        self.inbox = inbox
        self._submit = submit
        self._options = options
        self._stopping = stopping
        self._cond = threading.Condition()
        self.in_flight = 0
        self.thread = threading.Thread(
            target=self._run, name=f"dtpyfw-consume-{inbox.group}", daemon=True
        )

    def done(self, count: int = 1) -> None:
        """``count`` messages finished (acknowledged, dead-lettered or given up)."""
        with self._cond:
            self.in_flight -= count
            self._cond.notify_all()

    def _run(self) -> None:
        options, inbox = self._options, self.inbox
        paused = False
        failures = 0
        try:
            while not self._stopping.is_set():
                with self._cond:
                    room = options.max_in_flight - self.in_flight
                    busy = self.in_flight > 0
                try:
                    if room <= 0:
                        if not paused:
                            inbox.pause()
                            paused = True
                        inbox.fetch(0, 0)  # flush acks; keep a Kafka member polling
                        with self._cond:
                            self._cond.wait_for(
                                lambda: (
                                    self.in_flight < options.max_in_flight
                                    or self._stopping.is_set()
                                ),
                                timeout=options.poll_timeout,
                            )
                        continue
                    if paused:
                        inbox.resume()
                        paused = False
                    timeout = (
                        min(options.poll_timeout, _BUSY_POLL) if busy else options.poll_timeout
                    )
                    batch = inbox.fetch(min(room, options.batch_size), timeout)
                except Exception as exc:
                    failures += 1
                    self._broker_failed(exc, failures)
                    self._stopping.wait(min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (failures - 1)))
                    continue
                if failures:
                    logger.info("consumer group %r reads again", inbox.group)
                    failures = 0
                if batch:
                    with self._cond:
                        self.in_flight += len(batch)
                    self._submit(inbox, batch, self)
            self._drain()
        finally:
            try:
                inbox.close()
            except Exception:
                logger.exception("closing the inbox of group %r failed", inbox.group)

    def _drain(self) -> None:
        with self._cond:
            finished = self._cond.wait_for(
                lambda: self.in_flight <= 0, timeout=self._options.shutdown_timeout
            )
            left = self.in_flight
        if not finished:
            logger.warning(
                "group %r: %d message(s) still in flight after %gs; "
                "they stay unacknowledged and will be delivered again",
                self.inbox.group,
                left,
                self._options.shutdown_timeout,
                extra={"group": self.inbox.group, "in_flight": left},
            )
        try:
            self.inbox.flush()
        except Exception:
            logger.exception("flushing acknowledgements of group %r failed", self.inbox.group)

    def _broker_failed(self, exc: Exception, failures: int) -> None:
        log = logger.warning if failures == 1 else logger.debug
        log(
            "consumer group %r cannot read (%s: %s); retrying",
            self.inbox.group,
            type(exc).__name__,
            exc,
            extra={"group": self.inbox.group, "failures": failures},
        )


class RunnerOptions(TypedDict, total=False):
    """Keyword options of :class:`Runner` and :class:`AsyncRunner` (defaults in brackets)."""

    #: Attempts and backoff of a failing handler [``RetryPolicy()``].
    retry: RetryPolicy | None
    #: Records handled message ids, for ``skip_processed`` [None].
    idempotency: IdempotencyStore | None
    #: Skip messages the idempotency store has seen handled [False].
    skip_processed: bool
    #: Handlers running at once [8]; 1 keeps per-partition order.
    concurrency: int
    #: Messages fetched but not yet settled, per group [256].
    max_in_flight: int
    #: Messages one fetch asks for [100].
    batch_size: int
    #: Seconds one fetch waits for messages [1.0].
    poll_timeout: float
    #: Seconds stop() lets running handlers finish [30.0].
    shutdown_timeout: float


class _RunnerBase:
    """What both runners share: options, pumps, stop requests, counters."""

    def __init__(
        self,
        transport: Any,
        subscriptions: Callable[[], Sequence[Any]],
        **options: Unpack[RunnerOptions],
    ) -> None:
        self.transport = transport
        self._subscriptions = subscriptions
        self.options = _Options(
            options.get("concurrency", 8),
            options.get("max_in_flight", 256),
            options.get("batch_size", 100),
            options.get("poll_timeout", 1.0),
            options.get("shutdown_timeout", 30.0),
        )
        self.dispatcher = Dispatcher(
            options.get("retry") or RetryPolicy(),
            idempotency=options.get("idempotency"),
            skip_processed=options.get("skip_processed", False),
        )
        self._stats = _Stats()
        self._stopping = threading.Event()
        self._stop_requested = threading.Event()
        self._pumps: list[_Pump] = []
        self._started = False
        self._stopped = False

    @property
    def handled(self) -> int:
        """Messages whose handler succeeded since start."""
        return self._stats.handled

    @property
    def dead_lettered(self) -> int:
        """Messages dead-lettered since start."""
        return self._stats.dead_lettered

    @property
    def running(self) -> bool:
        """True between start and the end of stop."""
        return self._started and not self._stopped

    def request_stop(self) -> None:
        """Ask ``run()`` to stop; returns at once (safe from signal handlers and threads)."""
        self._stop_requested.set()

    def _open(self, submit: Callable[[Inbox, list[Delivery], _Pump], None]) -> None:
        if self._started:
            raise MessagingError("this runner was already started; make a new one")
        self._started = True
        subscriptions = list(self._subscriptions())
        inboxes = self.transport.inboxes(subscriptions) if subscriptions else []
        self._pumps = [_Pump(inbox, submit, self.options, self._stopping) for inbox in inboxes]
        for pump in self._pumps:
            pump.thread.start()
        if not subscriptions:
            logger.warning("runner started with no handler subscribed: nothing to consume")
        elif not inboxes:
            logger.info("the transport delivers in process: the runner has nothing to read")
        else:
            logger.info(
                "consuming %d group(s): %s",
                len(inboxes),
                "; ".join(f"{i.group} <- {', '.join(i.channels)}" for i in inboxes),
                extra={"groups": [i.group for i in inboxes]},
            )

    def _join_pumps(self, timeout: float | None) -> None:
        self._stopping.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        for pump in self._pumps:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            pump.thread.join(remaining)

    def _dead_letter(
        self, inbox: Inbox, delivery: Delivery, message: Message | None, failure: Failure
    ) -> None:
        log_dead_letter(message, delivery.group, failure, channel=delivery.channel)
        inbox.dead_letter(delivery, failure.describe(), failure.attempts, message)
        self._stats.add(dead_lettered=1)


class Runner(_RunnerBase):
    """Consumes ``bus.transport`` for the handlers subscribed on ``bus`` (a MessageBus).

    ``start()`` runs it in background threads until ``stop()``; ``run()``
    runs it in the foreground until SIGTERM/SIGINT or ``request_stop()``.
    Subscribe handlers before starting: the groups and channels read are
    fixed at start. With ``concurrency=1`` each group's handlers run one at a
    time in its pump thread, in the order fetched (strict per-partition order
    on Kafka); above 1 they run in a pool of that many threads.
    """

    def __init__(self, bus: MessageBus, **options: Unpack[RunnerOptions]) -> None:
        super().__init__(bus.transport, bus.subscriptions, **options)
        self.bus = bus
        self._consumer: Consumer = bus.consumer
        self._executor: ThreadPoolExecutor | None = None
        self._abandon = threading.Event()

    @classmethod
    def from_settings(
        cls,
        bus: MessageBus,
        settings: MessagingSettings,
        *,
        idempotency: IdempotencyStore | None = None,
    ) -> Runner:
        """A runner with the options of the ``messaging`` section."""
        return cls(bus, **_options_of(settings, idempotency))

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self._stopped else "new"
        return f"Runner(<{state}, {len(self._pumps)} group(s)>)"

    def start(self) -> None:
        """Start consuming in background threads; returns at once."""
        if self.options.concurrency > 1:
            self._executor = ThreadPoolExecutor(
                max_workers=self.options.concurrency, thread_name_prefix="dtpyfw-handler"
            )
        try:
            self._open(self._submit)
        except BaseException:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
            self._stopped = True
            raise

    def stop(self, timeout: float | None = None) -> None:
        """Stop fetching, let handlers finish, acknowledge, close; harmless twice.

        ``timeout`` bounds the whole stop (default: ``shutdown_timeout`` plus a
        poll); handlers still running then are abandoned, unacknowledged.
        """
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stop_requested.set()
        limit = timeout
        if limit is None:
            limit = self.options.shutdown_timeout + self.options.poll_timeout + 5.0
        self._join_pumps(limit)
        self._abandon.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._stopped = True
        logger.info(
            "runner stopped: %d handled, %d dead-lettered", self.handled, self.dead_lettered
        )

    def run(self, *, handle_signals: bool = True) -> None:
        """Consume until ``request_stop()`` or (with ``handle_signals``) SIGTERM/SIGINT."""
        with _signals_call(self.request_stop) if handle_signals else contextlib.nullcontext():
            self.start()
            try:
                self._stop_requested.wait()
            finally:
                self.stop()

    def __enter__(self) -> Runner:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _submit(self, inbox: Inbox, batch: list[Delivery], pump: _Pump) -> None:
        if self.options.concurrency == 1:
            # One handler at a time: run it in the pump's own thread, in order, no hand-off.
            self._work(inbox, batch, pump)
            return
        executor = self._executor
        assert executor is not None
        # Chunks, not single messages: one task per handler thread keeps hand-off cheap.
        size = max(1, math.ceil(len(batch) / self.options.concurrency))
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            try:
                executor.submit(self._work, inbox, chunk, pump)
            except RuntimeError:  # shut down: these stay unacknowledged
                pump.done(len(chunk))

    def _work(self, inbox: Inbox, chunk: list[Delivery], pump: _Pump) -> None:
        finished = handled = 0
        try:
            for delivery in chunk:
                if self._abandon.is_set():
                    return
                try:
                    handled += self._process(inbox, delivery)
                except Exception:
                    logger.exception(
                        "message at %s could not be acknowledged or dead-lettered; "
                        "it will be delivered again",
                        delivery.position,
                    )
                finished += 1
                if finished % _DONE_EVERY == 0:
                    pump.done(_DONE_EVERY)
        finally:
            self._stats.add(handled=handled)
            # Unfinished ones (abandoned at shutdown) stay unacknowledged but leave the count.
            pump.done(len(chunk) - finished + finished % _DONE_EVERY)

    def _process(self, inbox: Inbox, delivery: Delivery) -> bool:
        """Handle one delivery; True when its handler succeeded (it is then acked)."""
        try:
            message = delivery.decode()
        except InvalidMessage as exc:
            self._dead_letter(inbox, delivery, None, Failure(exc, 1))
            return False
        failure = self.dispatcher.run(self._consumer, message, delivery.group)
        if failure is None:
            inbox.ack(delivery)
            return True
        self._dead_letter(inbox, delivery, message, failure)
        return False


class AsyncRunner(_RunnerBase):
    """Async twin of :class:`Runner` for an AsyncMessageBus: ``await runner.start()``.

    Handlers run on the event loop that called ``start()`` (plain ones in
    worker threads), at most ``concurrency`` at a time.
    """

    def __init__(self, bus: AsyncMessageBus, **options: Unpack[RunnerOptions]) -> None:
        super().__init__(bus.transport, bus.subscriptions, **options)
        self.bus = bus
        self._consumer: AsyncConsumer = bus.consumer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup: asyncio.Event | None = None

    @classmethod
    def from_settings(
        cls,
        bus: AsyncMessageBus,
        settings: MessagingSettings,
        *,
        idempotency: IdempotencyStore | None = None,
    ) -> AsyncRunner:
        """An async runner with the options of the ``messaging`` section."""
        return cls(bus, **_options_of(settings, idempotency))

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self._stopped else "new"
        return f"AsyncRunner(<{state}, {len(self._pumps)} group(s)>)"

    async def start(self) -> None:
        """Start consuming: pump threads read, handlers run on this event loop."""
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self._wakeup = asyncio.Event()
        try:
            # Opening inboxes talks to the broker (creating groups): not on the loop.
            await asyncio.to_thread(self._open, self._submit)
        except BaseException:
            self._stopped = True
            raise

    async def stop(self, timeout: float | None = None) -> None:
        """Async twin of :meth:`Runner.stop`."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self.request_stop()
        limit = timeout
        if limit is None:
            limit = self.options.shutdown_timeout + self.options.poll_timeout + 5.0
        await asyncio.to_thread(self._join_pumps, limit)
        for task in list(self._tasks):  # past the shutdown timeout: give them up
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._stopped = True
        logger.info(
            "runner stopped: %d handled, %d dead-lettered", self.handled, self.dead_lettered
        )

    def request_stop(self) -> None:
        """Ask ``run()`` to stop; returns at once (safe from any thread)."""
        super().request_stop()
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wakeup.set)

    async def run(self, *, handle_signals: bool = True) -> None:
        """Consume until ``request_stop()`` or (with ``handle_signals``) SIGTERM/SIGINT."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed: list[int] = []
        if handle_signals:
            for number in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(number, self.request_stop)
                    installed.append(number)
        try:
            assert self._wakeup is not None
            while not self._stop_requested.is_set():
                await self._wakeup.wait()
        finally:
            for installed_number in installed:
                loop.remove_signal_handler(installed_number)
            await self.stop()

    async def __aenter__(self) -> AsyncRunner:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _submit(self, inbox: Inbox, batch: list[Delivery], pump: _Pump) -> None:
        loop = self._loop
        assert loop is not None
        size = max(1, math.ceil(len(batch) / self.options.concurrency))
        chunks = [batch[start : start + size] for start in range(0, len(batch), size)]
        try:
            loop.call_soon_threadsafe(self._spawn, inbox, chunks, pump)
        except RuntimeError:  # the loop is closed: these stay unacknowledged
            pump.done(len(batch))

    def _spawn(self, inbox: Inbox, chunks: list[list[Delivery]], pump: _Pump) -> None:
        assert self._loop is not None
        for chunk in chunks:
            task = self._loop.create_task(self._work(inbox, chunk, pump))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _work(self, inbox: Inbox, chunk: list[Delivery], pump: _Pump) -> None:
        assert self._slots is not None
        finished = 0
        try:
            async with self._slots:
                for delivery in chunk:
                    try:
                        await self._process(inbox, delivery)
                    except Exception:
                        logger.exception(
                            "message at %s could not be acknowledged or dead-lettered; "
                            "it will be delivered again",
                            delivery.position,
                        )
                    finally:
                        finished += 1
                        pump.done()
        finally:
            if finished < len(chunk):  # cancelled at shutdown: left unacknowledged
                pump.done(len(chunk) - finished)

    async def _process(self, inbox: Inbox, delivery: Delivery) -> None:
        try:
            message = delivery.decode()
        except InvalidMessage as exc:
            await asyncio.to_thread(self._dead_letter, inbox, delivery, None, Failure(exc, 1))
            return
        failure = await self.dispatcher.arun(self._consumer, message, delivery.group)
        if failure is None:
            inbox.ack(delivery)  # buffered: never blocks the loop
            self._stats.add(handled=1)
        else:
            await asyncio.to_thread(self._dead_letter, inbox, delivery, message, failure)


def _options_of(settings: MessagingSettings, idempotency: IdempotencyStore | None) -> RunnerOptions:
    return {
        "idempotency": idempotency,
        "retry": settings.retry,
        "skip_processed": settings.idempotency.skip_processed,
        "concurrency": settings.concurrency,
        "max_in_flight": settings.max_in_flight,
        "batch_size": settings.batch_size,
        "poll_timeout": settings.poll_timeout,
        "shutdown_timeout": settings.shutdown_timeout,
    }


@contextlib.contextmanager
def _signals_call(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` on SIGTERM and SIGINT for the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(number: int, frame: FrameType | None) -> None:
        callback()

    previous = {
        number: signal.signal(number, handler) for number in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
