"""Log shipping against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from dtpyfw.core.context import bind_context
from dtpyfw.log import (
    REDACTED,
    HttpShippingHandler,
    LogSettings,
    ShippingSettings,
    configure_logging,
    reset_logging,
)


@dataclass
class Received:
    """One request as the server saw it."""

    headers: dict[str, str]
    raw: bytes
    records: list[dict[str, Any]]


@dataclass
class Aggregator:
    """What the server answers and what it has received."""

    url: str
    status: int = 200
    gate: threading.Event | None = None  # when given, requests wait for it to be set
    entered: threading.Event = field(default_factory=threading.Event)  # a request arrived
    requests: list[Received] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def messages(self) -> list[str]:
        with self.changed:
            return [r["message"] for req in self.requests for r in req.records]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), "aggregator never got there"


@pytest.fixture
def aggregator() -> Iterator[Aggregator]:
    """A ThreadingHTTPServer on an ephemeral loopback port that records POSTed batches."""
    state: Aggregator

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            state.entered.set()
            if state.gate is not None:
                state.gate.wait(30)
            with state.changed:
                state.requests.append(Received(dict(self.headers), raw, json.loads(raw)))
                state.changed.notify_all()
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the server quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = Aggregator(url=f"http://127.0.0.1:{server.server_address[1]}/logs")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    reset_logging()
    if state.gate is not None:
        state.gate.set()
    server.shutdown()
    server.server_close()
    thread.join(10)


def _configure(aggregator: Aggregator, **shipping: Any) -> HttpShippingHandler:
    settings = ShippingSettings.model_validate({"url": aggregator.url, **shipping})
    configure_logging(LogSettings(stdout=False, shipping=settings), service="svc", version="9")
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h, HttpShippingHandler)]
    return handler


def test_batches_arrive_as_json_arrays_in_order_with_headers(aggregator: Aggregator) -> None:
    """Records reach the server as JSON arrays, in order, with context and the headers."""
    handler = _configure(
        aggregator,
        batch_size=4,
        flush_interval=30,
        headers={"Authorization": SecretStr("Bearer wire-t0ken")},
    )
    with bind_context(request_id="req-1"):
        for number in range(10):
            logging.getLogger("app").warning("r%d", number)
    handler.flush(10)

    assert aggregator.messages == [f"r{n}" for n in range(10)]
    assert [len(req.records) for req in aggregator.requests] == [4, 4, 2]
    first = aggregator.requests[0]
    assert first.headers["Authorization"] == "Bearer wire-t0ken"
    assert first.headers["Content-Type"] == "application/json"
    assert first.records[0]["request_id"] == "req-1"
    assert first.records[0]["service"] == "svc"
    assert first.records[0]["version"] == "9"
    assert handler.sent == 10


def test_secrets_are_redacted_on_the_wire(aggregator: Aggregator) -> None:
    """Nothing secret is in the bytes the aggregator receives."""
    handler = _configure(aggregator, flush_interval=30)
    logging.getLogger("app").warning(
        "login password=hunter2 via %s",
        "https://u:pa55@idp/x?access_token=abc",
        extra={"api_key": "k-123", "session": {"cookie": "c-456"}, "dsn": SecretStr("s-789")},
    )
    handler.flush(10)
    [request] = aggregator.requests
    for secret in (b"hunter2", b"pa55", b"abc", b"k-123", b"c-456", b"s-789"):
        assert secret not in request.raw
    [record] = request.records
    assert record["api_key"] == REDACTED
    assert record["session"] == {"cookie": REDACTED}


def test_error_status_counts_failed_without_recursion(aggregator: Aggregator) -> None:
    """A 500 counts the records as failed; the failure report is not shipped itself."""
    aggregator.status = 500
    handler = _configure(aggregator, batch_size=3, flush_interval=30)
    for number in range(6):
        logging.getLogger("app").warning("r%d", number)
    handler.flush(10)
    assert handler.failed == 6
    assert handler.sent == 0
    logging.getLogger("app").warning("after")
    handler.flush(10)
    # Only the application's records arrive: no "log shipping failed" report, no httpx lines.
    assert aggregator.messages == [f"r{n}" for n in range(6)] + ["after"]
    assert handler.failed == 7


def test_a_stuck_aggregator_never_blocks_the_caller(aggregator: Aggregator) -> None:
    """While the server hangs, logging returns at once and the overflow is dropped."""
    aggregator.gate = threading.Event()
    handler = _configure(aggregator, batch_size=1, queue_size=5, flush_interval=30, timeout=30)
    logging.getLogger("app").warning("first")
    assert aggregator.entered.wait(10)  # the worker is now stuck sending "first"
    done = threading.Event()

    def burst() -> None:
        for number in range(200):
            logging.getLogger("app").warning("r%d", number)
        done.set()

    thread = threading.Thread(target=burst)
    thread.start()
    assert done.wait(10), "logging blocked while the aggregator hung"
    assert not aggregator.gate.is_set()
    assert handler.dropped == 200 - 5  # five fit in the queue behind the stuck batch
    aggregator.gate.set()
    thread.join(10)
    handler.flush(10)
    assert aggregator.messages == ["first", "r0", "r1", "r2", "r3", "r4"]


def test_a_slow_aggregator_counts_timeouts_as_failed(aggregator: Aggregator) -> None:
    """A response slower than ``timeout`` fails the batch instead of waiting for it."""
    aggregator.gate = threading.Event()
    handler = _configure(aggregator, flush_interval=30, timeout=0.2)
    logging.getLogger("app").warning("slow")
    handler.flush(10)
    assert handler.failed == 1
    assert handler.sent == 0


def test_close_drains_what_was_queued(aggregator: Aggregator) -> None:
    """reset_logging closes the handler, which sends every queued record first."""
    handler = _configure(aggregator, batch_size=1000, flush_interval=30)
    for number in range(50):
        logging.getLogger("app").warning("r%d", number)
    reset_logging()
    assert aggregator.messages == [f"r{n}" for n in range(50)]
    assert handler.sent == 50
    assert handler.dropped == 0


def test_partial_batches_go_out_on_the_flush_interval(aggregator: Aggregator) -> None:
    """Without flush() or close(), a record is delivered after flush_interval."""
    _configure(aggregator, flush_interval=0.1)
    logging.getLogger("app").warning("tick")
    aggregator.wait_for(lambda: len(aggregator.requests) == 1)
    assert aggregator.messages == ["tick"]
