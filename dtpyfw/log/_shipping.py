"""Ship JSON log records to an HTTP aggregator in batches, from a background thread.

The caller never waits on the network: :meth:`HttpShippingHandler.emit` formats
the record and puts it on a bounded queue, dropping it (and counting it in
``dropped``) when the queue is full. A daemon worker sends batches as JSON
arrays. Records logged on the worker thread itself (httpx's own logs, the
handler's failure reports) are never queued, so a broken aggregator cannot feed
on its own errors.
"""

from __future__ import annotations

__all__ = ["HttpShippingHandler", "ShippingNoiseFilter"]

import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dtpyfw.log._format import JsonFormatter
from dtpyfw.log._settings import ShippingSettings

if TYPE_CHECKING:
    import httpx

_logger = logging.getLogger("dtpyfw.log")


class HttpShippingHandler(logging.Handler):
    """POST batches of JSON records to ``url``; ``sent``, ``dropped`` and ``failed``
    count records.

    ``failed`` counts records in batches the aggregator refused or did not
    answer in time (they are not retried). The worker starts with the first
    record (again in a forked child) unless ``autostart=False``, in which case
    :meth:`start` starts it. Pass ``client`` to send through your own
    ``httpx.Client`` (its transport, proxies, TLS); the handler does not close it.
    """

    _queue: queue.Queue[str | None]
    _state: threading.Condition
    _local: threading.local
    _thread: threading.Thread | None
    _enqueued: int
    _processed: int
    _flush_target: int
    _sent: int
    _dropped: int
    _failed: int
    _closed: bool
    _stopping: bool
    _abandon: bool
    _failing: bool

    def __init__(
        self,
        url: str,
        *,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        queue_size: int = 10_000,
        timeout: float = 5.0,
        close_timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        client: httpx.Client | None = None,
        autostart: bool = True,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        if batch_size < 1 or queue_size < 1 or flush_interval <= 0 or timeout <= 0:
            raise ValueError(
                "batch_size and queue_size must be >= 1, flush_interval and timeout > 0"
            )
        self.url = url
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.queue_size = queue_size
        self.timeout = timeout
        self.close_timeout = close_timeout
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._client = client
        self._autostart = autostart
        self.setFormatter(JsonFormatter())
        self._init_state()
        _HANDLERS.add(self)

    @classmethod
    def from_settings(
        cls,
        settings: ShippingSettings,
        *,
        client: httpx.Client | None = None,
        autostart: bool = True,
    ) -> HttpShippingHandler:
        """A handler configured from :class:`ShippingSettings`."""
        return cls(
            settings.url,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval,
            queue_size=settings.queue_size,
            timeout=settings.timeout,
            close_timeout=settings.close_timeout,
            headers={name: value.get_secret_value() for name, value in settings.headers.items()},
            client=client,
            autostart=autostart,
        )

    @property
    def sent(self) -> int:
        """Records the aggregator accepted (2xx)."""
        return self._sent

    @property
    def dropped(self) -> int:
        """Records discarded because the queue was full or the handler was closed."""
        return self._dropped

    @property
    def failed(self) -> int:
        """Records in batches that got an error status, a timeout or a connection error."""
        return self._failed

    def start(self) -> None:
        """Start the worker thread (a no-op when it runs already)."""
        with self._state:
            self._autostart = True
            if self._thread is None and not self._closed:
                thread = threading.Thread(target=self._run, name="dtpyfw-log-shipper", daemon=True)
                self._thread = thread
                thread.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """Ignore records made by a shipping worker or while this handler emits.

        The check runs before the handler lock is taken, so a worker logging
        while :meth:`close` holds that lock cannot deadlock.
        """
        if threading.get_ident() in _WORKER_IDENTS or getattr(self._local, "emitting", False):
            return False
        return super().handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the formatted record without blocking; count it as dropped when full."""
        self._local.emitting = True
        try:
            if self._closed:
                self._count_dropped(1)
                return
            if self._autostart and self._thread is None:
                self.start()
            line = self.format(record)
            try:
                self._queue.put_nowait(line)
            except queue.Full:
                self._count_dropped(1)
                return
            with self._state:
                self._enqueued += 1
        except Exception:
            self.handleError(record)
        finally:
            self._local.emitting = False

    def flush(self, timeout: float | None = None) -> None:
        """Send what was queued before this call; wait at most ``timeout`` seconds
        (default ``close_timeout``)."""
        thread = self._thread
        if thread is None or thread.ident == threading.get_ident():
            return
        with self._state:
            target = self._enqueued
            self._flush_target = max(self._flush_target, target)
        self._wake()
        with self._state:
            self._state.wait_for(
                lambda: self._processed >= target or not thread.is_alive(),
                self.close_timeout if timeout is None else timeout,
            )

    def close(self) -> None:
        """Send what is queued (for at most ``close_timeout`` seconds), stop the worker.

        Records still queued at the deadline are counted in ``dropped``. Closing
        twice is harmless.
        """
        with self._state:
            already_closed, self._closed = self._closed, True
        thread = self._thread
        if not already_closed:
            if thread is not None and thread.ident != threading.get_ident():
                self._stopping = True
                self._wake()
                thread.join(self.close_timeout)
                if thread.is_alive():
                    self._abandon = True
                    self._wake()
            elif thread is None:
                self._discard_queue()
        super().close()

    # -- worker ---------------------------------------------------------------

    def _run(self) -> None:
        _WORKER_IDENTS.add(threading.get_ident())
        if self._client is not None:
            client = self._client
        else:
            import httpx  # on the worker thread: configuring logs must not pay for httpx

            client = httpx.Client()
        try:
            while not self._abandon:
                batch = self._next_batch()
                if batch:
                    self._ship(client, batch)
                elif self._stopping:
                    break
            self._discard_queue()
        finally:
            if self._client is None:
                client.close()
            _WORKER_IDENTS.discard(threading.get_ident())
            with self._state:
                self._state.notify_all()

    def _next_batch(self) -> list[str]:
        batch: list[str] = []
        deadline: float | None = None
        while len(batch) < self.batch_size and not self._abandon:
            # flush() or close() is waiting: send what is there instead of waiting for more.
            urgent = self._stopping or self._flush_target > self._processed
            try:
                if urgent:
                    item = self._queue.get_nowait()
                else:
                    wait = self.flush_interval if deadline is None else deadline - time.monotonic()
                    if wait <= 0:
                        break
                    item = self._queue.get(timeout=wait)
            except queue.Empty:
                break
            if item is None:  # a wake-up from flush() or close(): re-check the urgency
                continue
            batch.append(item)
            if deadline is None:
                deadline = time.monotonic() + self.flush_interval
        return batch

    def _ship(self, client: httpx.Client, batch: list[str]) -> None:
        body = ("[" + ",".join(batch) + "]").encode()
        error: str | None = None
        try:
            response = client.post(
                self.url, content=body, headers=self._headers, timeout=self.timeout
            )
            if not response.is_success:
                error = f"HTTP {response.status_code}"
        except Exception as exc:  # the worker must survive any transport failure
            error = f"{type(exc).__name__}: {exc}"
        # Report transitions only, so a dead aggregator does not flood the other
        # handlers; report before counting, so flush() returns after the report.
        with contextlib.suppress(Exception):  # a raising filter must not kill the worker
            if error is not None and not self._failing:
                _logger.warning(
                    "log shipping failed",
                    extra={"url": self.url, "error": error, "records": len(batch)},
                )
            elif error is None and self._failing:
                _logger.info("log shipping recovered", extra={"url": self.url})
        self._failing = error is not None
        with self._state:
            if error is None:
                self._sent += len(batch)
            else:
                self._failed += len(batch)
            self._processed += len(batch)
            self._state.notify_all()

    # -- helpers --------------------------------------------------------------

    def _init_state(self) -> None:
        self._queue = queue.Queue(self.queue_size)
        self._state = threading.Condition(threading.Lock())
        self._local = threading.local()
        self._thread = None
        self._enqueued = self._processed = self._flush_target = 0
        self._sent = self._dropped = self._failed = 0
        self._closed = self._stopping = self._abandon = self._failing = False

    def _after_fork_in_child(self) -> None:
        # The worker did not survive the fork and the locks may be held by a dead
        # thread: start afresh. Records queued in the parent are the parent's to send.
        closed = self._closed
        self._init_state()
        self._closed = closed

    def _wake(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # a full queue wakes the worker anyway

    def _discard_queue(self) -> None:
        discarded = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            discarded += item is not None
        if discarded:
            self._count_dropped(discarded)

    def _count_dropped(self, count: int) -> None:
        with self._state:
            self._dropped += count


class ShippingNoiseFilter(logging.Filter):
    """Drop httpx/httpcore records made on a shipping worker thread.

    Otherwise every batch sent would print an ``HTTP Request: POST ...`` line
    through the other handlers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the worker's own HTTP client chatter."""
        return not (
            record.thread in _WORKER_IDENTS and record.name.startswith(("httpx", "httpcore"))
        )


_WORKER_IDENTS: set[int] = set()
_HANDLERS: weakref.WeakSet[HttpShippingHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _WORKER_IDENTS.clear()
    for handler in list(_HANDLERS):
        handler._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
