"""HttpShippingHandler without a network: httpx.MockTransport and controlled workers."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from dtpyfw.core.context import bind_context
from dtpyfw.log import (
    REDACTED,
    ContextFilter,
    HttpShippingHandler,
    LogSettings,
    RedactingFilter,
    ShippingSettings,
    configure_logging,
    reset_logging,
)

URL = "http://aggregator.invalid/logs"


class Aggregator:
    """A MockTransport handler that records batches; ``gate`` holds requests back."""

    def __init__(self, status: int = 200, error: Exception | None = None) -> None:
        self.status = status
        self.error = error
        self.batches: list[list[dict[str, Any]]] = []
        self.requests: list[httpx.Request] = []
        self.entered = threading.Event()
        self.received = threading.Event()
        self.gate: threading.Event | None = None
        self.on_request: Callable[[], None] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.entered.set()
        if self.on_request is not None:
            self.on_request()
        if self.gate is not None:
            assert self.gate.wait(10), "test never opened the gate"
        self.requests.append(request)
        self.batches.append(json.loads(request.content))
        self.received.set()
        if self.error is not None:
            raise self.error
        return httpx.Response(self.status)

    @property
    def messages(self) -> list[str]:
        return [record["message"] for batch in self.batches for record in batch]


class ListHandler(logging.Handler):
    """Keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def aggregator() -> Aggregator:
    return Aggregator()


@pytest.fixture
def make_handler(
    aggregator: Aggregator,
) -> Iterator[Callable[..., tuple[HttpShippingHandler, logging.Logger]]]:
    """Build handlers on a private logger; close them (and their clients) afterwards."""
    made: list[tuple[HttpShippingHandler, logging.Logger, httpx.Client]] = []

    def make(**kwargs: Any) -> tuple[HttpShippingHandler, logging.Logger]:
        client = httpx.Client(transport=httpx.MockTransport(aggregator))
        kwargs.setdefault("flush_interval", 60.0)
        handler = HttpShippingHandler(URL, client=client, **kwargs)
        logger = logging.getLogger(f"test.shipping.{uuid.uuid4().hex}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        made.append((handler, logger, client))
        return handler, logger

    yield make
    if aggregator.gate is not None:
        aggregator.gate.set()
    for handler, logger, client in made:
        logger.removeHandler(handler)
        handler.close()
        client.close()
    reset_logging()


def _emit_in_thread(logger: logging.Logger, count: int) -> None:
    """Log ``count`` records on another thread and fail if that thread blocks."""

    def burst() -> None:
        for number in range(count):
            logger.info("r%d", number)

    thread = threading.Thread(target=burst)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "emit blocked the caller"


def test_full_queue_drops_without_blocking_when_worker_not_started(
    make_handler: Callable[..., tuple[HttpShippingHandler, logging.Logger]],
) -> None:
    """With no worker draining, records beyond queue_size are dropped and counted."""
    handler, logger = make_handler(queue_size=3, autostart=False)
    _emit_in_thread(logger, 10)
    assert handler.dropped == 7
    assert handler.sent == 0


def test_full_queue_drops_while_the_worker_is_stuck_sending(
    aggregator: Aggregator,
    make_handler: Callable[..., tuple[HttpShippingHandler, logging.Logger]],
) -> None:
    """A stuck request never blocks callers; overflow is counted; the rest is sent later."""
    aggregator.gate = threading.Event()
    handler, logger = make_handler(queue_size=2, batch_size=1)
    logger.info("r0")
    assert aggregator.entered.wait(10)  # the worker holds r0 inside the request
    _emit_in_thread(logger, 5)  # r0..r4 again: two fit, three are dropped
    assert handler.dropped == 3
    aggregator.gate.set()
    handler.flush(10)
    assert aggregator.messages == ["r0", "r0", "r1"]
    assert handler.sent == 3


def test_records_are_batched_in_order_up_to_batch_size(
    aggregator: Aggregator,
    make_handler: Callable[..., tuple[HttpShippingHandler, logging.Logger]],
) -> None:
    """Batches hold at most batch_size records and keep the logging order."""
    handler, logger = make_handler(batch_size=3)
    for number in range(7):
        logger.info("r%d", number)
    handler.flush(10)
    assert [[r["message"] for r in batch] for batch in aggregator.batches] == [
        ["r0", "r1", "r2"],
        ["r3", "r4", "r5"],
        ["r6"],
    ]
    assert handler.sent == 7


def test_partial_batch_is_sent_after_flush_interval(
    aggregator: Aggregator,
    make_handler: Callable[..., tuple[HttpShippingHandler, logging.Logger]],
) -> None:
    """A lone record is sent once flush_interval passes, without an explicit flush."""
    _, logger = make_handler(batch_size=100, flush_interval=0.05)
    logger.info("alone")
    assert aggregator.received.wait(10)
    assert aggregator.messages == ["alone"]


def test_headers_and_json_content_type_are_sent(
    aggregator: Aggregator, make_handler: Callable[..., tuple[HttpShippingHandler, logging.Logger]]
) -> None:
    """Each request is a JSON POST carrying the configured headers."""
    handler, logger = make_handler(headers={"Authorization": "Bearer t0k", "X-Tenant": "acme"})
    logger.info("hi")
    handler.flush(10)
    [request] = aggregator.requests
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer t0k"
    assert request.headers["x-tenant"] == "acme"


def test_from_settings_copies_limits_and_unwraps_secret_headers(aggregator: Aggregator) -> None:
    """from_settings copies the limits and puts secret header values on the wire."""
    settings = ShippingSettings(
        url=URL, batch_size=7, queue_size=9, headers={"Authorization": SecretStr("Bearer s")}
    )
    with httpx.Client(transport=httpx.MockTransport(aggregator)) as client:
        handler = HttpShippingHandler.from_settings(settings, client=client)
        try:
            assert (handler.batch_size, handler.queue_size) == (7, 9)
            handler.handle(logging.makeLogRecord({"msg": "hi"}))
            handler.flush(10)
        finally:
            handler.close()
    assert aggregator.requests[0].headers["authorization"] == "Bearer s"


@pytest.mark.parametrize(
    "aggregator",
    [Aggregator(status=500), Aggregator(error=httpx.ReadTimeout("too slow"))],
    ids=["http-500", "timeout"],
)
def test_failed_batches_are_counted_and_reported_once_without_recursion(
    aggregator: Aggregator,
    make_handler: Callable[..., tuple[HttpShippingHandler, logging.Logger]],
) -> None:
    """Failures count in ``failed``; the warning goes to other handlers, never to shipping."""
    reporter = ListHandler()
    dtpyfw_log = logging.getLogger("dtpyfw.log")
    dtpyfw_log.addHandler(reporter)
    handler, logger = make_handler(batch_size=2)
    dtpyfw_log.addHandler(handler)  # the failure report would loop back if not guarded
    try:
        for number in range(5):
            logger.info("r%d", number)
        handler.flush(10)
    finally:
        dtpyfw_log.removeHandler(reporter)
        dtpyfw_log.removeHandler(handler)
    assert handler.failed == 5
    assert handler.sent == 0
    assert aggregator.messages == ["r0", "r1", "r2", "r3", "r4"]
    assert [r.getMessage() for r in reporter.records] == ["log shipping failed"]


def test_records_logged_on_the_worker_thread_are_not_shipped(
    aggregator: Aggregator,
    make_handler: Callable[..., tuple[HttpShippingHandler, logging.Logger]],
) -> None:
    """Logging from inside the send (like httpx does) is ignored by the handler."""
    handler, logger = make_handler()
    aggregator.on_request = lambda: logger.warning("from inside the transport")
    logger.info("r0")
    handler.flush(10)
    logger.info("r1")
    handler.flush(10)
    assert aggregator.messages == ["r0", "r1"]
    assert handler.sent == 2


def test_close_sends_what_is_queued(
    aggregator: Aggregator,
    make_handler: Callable[..., tuple[HttpShippingHandler, logging.Logger]],
) -> None:
    """close() drains the queue before stopping the worker."""
    handler, logger = make_handler(batch_size=4)
    for number in range(10):
        logger.info("r%d", number)
    handler.close()
    assert aggregator.messages == [f"r{n}" for n in range(10)]
    assert handler.sent == 10


def test_closing_twice_is_harmless_and_later_records_are_dropped(
    make_handler: Callable[..., tuple[HttpShippingHandler, logging.Logger]],
) -> None:
    """A closed handler counts late records as dropped; a second close does nothing."""
    handler, logger = make_handler()
    handler.close()
    handler.close()
    logger.info("late")
    assert handler.dropped == 1


def test_closing_a_never_started_handler_counts_its_queue_as_dropped(
    make_handler: Callable[..., tuple[HttpShippingHandler, logging.Logger]],
) -> None:
    """Without a worker, close() discards the queue and says so in ``dropped``."""
    handler, logger = make_handler(autostart=False)
    logger.info("a")
    logger.info("b")
    handler.close()
    assert handler.dropped == 2


def test_context_is_read_in_the_callers_thread(
    aggregator: Aggregator,
    make_handler: Callable[..., tuple[HttpShippingHandler, logging.Logger]],
) -> None:
    """Filters run when the caller logs, so shipped records carry the caller's context."""
    handler, logger = make_handler()
    handler.addFilter(ContextFilter(service="svc"))
    handler.addFilter(RedactingFilter())
    with bind_context(request_id="req-7"):
        logger.warning("ship me", extra={"api_key": "k"})
    handler.flush(10)
    [[record]] = aggregator.batches
    assert record["request_id"] == "req-7"
    assert record["service"] == "svc"
    assert record["api_key"] == REDACTED


def test_http_client_chatter_from_the_worker_is_kept_off_other_handlers(
    aggregator: Aggregator,
    make_handler: Callable[..., tuple[HttpShippingHandler, logging.Logger]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """httpx's per-request INFO lines from the worker do not reach stdout; others do."""
    configure_logging(LogSettings(format="json"))
    httpx_logger = logging.getLogger("httpx")
    httpx_logger.setLevel(logging.INFO)
    try:
        handler, logger = make_handler()
        logger.info("r0")
        handler.flush(10)
        assert aggregator.messages == ["r0"]
        httpx_logger.info("from the main thread")
    finally:
        httpx_logger.setLevel(logging.NOTSET)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["message"] for line in lines if line["logger"] == "httpx"] == [
        "from the main thread"
    ]


def test_invalid_limits_are_rejected() -> None:
    """A handler that could never send (zero batch or queue) is refused."""
    with pytest.raises(ValueError, match="batch_size"):
        HttpShippingHandler(URL, batch_size=0, autostart=False)
