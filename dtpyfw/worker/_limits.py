"""Time limits: a timer thread, interrupting a thread, interrupting a coroutine, a loop thread.

**Soft limit.** A sync task gets :class:`SoftTimeLimitExceeded` raised in its
own thread (``PyThreadState_SetAsyncExc``); Python delivers it at the
thread's next instruction, so a blocking C call delays it until it returns.
An async task gets it at the ``await`` it is suspended in: the asyncio task
is cancelled and the ``CancelledError`` it would see is swapped for the soft
limit exception (the task is uncancelled, so it may catch it and go on).

**Hard limit.** The worker stops waiting: the attempt is recorded as failed
with :class:`HardTimeLimitExceeded` and a fresh slot takes the next task.
The abandoned call gets one best-effort exception (as above) and its outcome,
whenever it comes, is ignored.

An exception is only ever injected while the task's own code runs: the
guard is closed (and anything still pending cleared) before the worker's
code goes on, and at most one exception is injected per run.
"""

from __future__ import annotations

__all__ = ["Interruptible", "LoopThread", "ThreadInterrupt", "Watchdog", "run_in_new_thread"]

import asyncio
import concurrent.futures
import ctypes
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")
logger = logging.getLogger("dtpyfw.worker")


class Watchdog:
    """One daemon thread that runs callbacks at monotonic deadlines.

    Callbacks must be quick and must not block: they run one after another.
    """

    def __init__(self, name: str = "dtpyfw-worker-watchdog") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` in ``delay`` seconds unless the timer is cancelled first."""
        timer = Timer(callback)
        with self._cond:
            if self._closed:
                return timer
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return timer

    def close(self) -> None:
        """Stop the thread; pending timers never fire. Closing twice is harmless."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                if self._closed:
                    return
                _deadline, _order, timer = heapq.heappop(self._heap)
            timer.fire()


class Timer:
    """A pending watchdog callback."""

    __slots__ = ("_callback", "_lock", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback = callback
        self._lock = threading.Lock()
        self.cancelled = False

    def cancel(self) -> None:
        """Make sure the callback does not run (if it has not started)."""
        with self._lock:
            self.cancelled = True

    def fire(self) -> None:
        with self._lock:
            if self.cancelled:
                return
            self.cancelled = True
        try:
            self._callback()
        except Exception:
            logger.exception("worker timer callback failed")


class ThreadInterrupt:
    """Raises one exception in the thread that created it, while the guard is open."""

    __slots__ = ("_active", "_lock", "raised", "thread_id")

    def __init__(self) -> None:
        self.thread_id = threading.get_ident()
        self._lock = threading.Lock()
        self._active = True
        self.raised: type[BaseException] | None = None

    def interrupt(self, kind: type[BaseException]) -> bool:
        """Raise ``kind()`` in the thread if its task still runs and none was raised yet.

        Called from another thread (the watchdog, a loop thread), never the guarded one.
        """
        with self._lock:
            if not self._active or self.raised is not None:
                return False
            self.raised = kind
            _raise_in(self.thread_id, kind)
            return True

    def close(self) -> None:
        """Close the guard from the thread itself, dropping an exception still pending."""
        with self._lock:
            self._active = False
            if self.raised is not None:
                _drop_pending()


class _Withdrawn(BaseException):
    """Scheduled in the calling thread and caught there at once, to lower CPython's flag.

    ``PyThreadState_SetAsyncExc`` also raises an interpreter-wide "async
    exception pending" flag (CPython before 3.13) that only a thread raising
    its own scheduled exception lowers. Left up, every thread goes through the
    eval breaker at each call and loop, and under a tracer or profiler on 3.11
    (coverage, a debugger) no thread gets past its next function call. It is
    left up by ``SetAsyncExc(id, NULL)`` (which raises it with nothing to raise)
    and, until the call returns, by a target blocked in a C call. So the
    scheduling thread lowers it at once by raising one of these itself. The
    target still gets its exception at its next instruction: a thread taking
    the GIL with an exception pending raises the flag again. Between the two
    calls no Python function may be called: under a tracer it would stall on
    its first line while the flag is up.
    """


def _raise_in(thread_id: int, kind: type[BaseException]) -> None:
    """Schedule ``kind`` in another thread, then lower the flag (see :class:`_Withdrawn`)."""
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    this_thread = ctypes.c_ulong(threading.get_ident())
    withdrawn = ctypes.py_object(_Withdrawn)
    try:
        set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(kind))
        while True:  # raised at the first instruction that checks for it
            set_async_exc(this_thread, withdrawn)
    except _Withdrawn:
        pass


def _drop_pending() -> None:
    """Replace an exception still scheduled in this thread by one caught here at once."""
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    this_thread = ctypes.c_ulong(threading.get_ident())
    withdrawn = ctypes.py_object(_Withdrawn)
    try:
        while True:  # raised at the first instruction that checks for it
            set_async_exc(this_thread, withdrawn)
    except _Withdrawn:
        pass


class Interruptible(Coroutine[Any, Any, T]):
    """Wraps a coroutine so that :meth:`interrupt` raises an exception at its ``await``."""

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self._pending: BaseException | None = None
        self._task: asyncio.Task[T] | None = None

    def start(self) -> asyncio.Task[T]:
        """Run it as a task of the running loop."""
        self._task = asyncio.get_running_loop().create_task(self)
        return self._task

    def interrupt(self, exc: BaseException) -> bool:
        """Raise ``exc`` in the coroutine at its current ``await`` (call on its loop)."""
        task = self._task
        if task is None or task.done() or self._pending is not None:
            return False
        self._pending = exc
        task.cancel()
        return True

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        thrown = typ if isinstance(typ, BaseException) else val
        if self._pending is not None and isinstance(thrown, asyncio.CancelledError):
            replacement, self._pending = self._pending, None
            if self._task is not None:
                self._task.uncancel()
            return self._coro.throw(replacement)
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, T]:
        return self._coro.__await__()


def run_in_new_thread(fn: Callable[[], T], name: str) -> concurrent.futures.Future[T]:
    """Run ``fn`` in a fresh daemon thread; a thread that never returns blocks nothing."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


class LoopThread:
    """An event loop in a daemon thread, for async tasks run by thread workers."""

    def __init__(self, name: str = "dtpyfw-worker-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; wait on the returned future from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop, cancel what still runs on it, and close it."""
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            return  # closed meanwhile
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
