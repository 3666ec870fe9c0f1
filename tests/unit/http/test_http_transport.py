"""RetryTransport and AsyncRetryTransport over httpx.MockTransport (no sockets)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import httpx
import pytest

from dtpyfw.core.context import bind_context
from dtpyfw.core.errors import HttpError
from dtpyfw.core.retry import RetryPolicy
from dtpyfw.http import AsyncRetryTransport, RetryTransport

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
FAST = RetryPolicy(attempts=3, initial_delay=0, jitter=0)

Outcome = int | Exception


class Script:
    """A MockTransport handler that plays outcomes in order and records what it saw."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.read())
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return httpx.Response(outcome, text=f"status {outcome}")


class RecordingClose(httpx.MockTransport):
    """A MockTransport that remembers being closed."""

    closed = False

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def connect_error() -> httpx.ConnectError:
    """A connection failure as the real transport raises it."""
    return httpx.ConnectError("connection refused")


@pytest.fixture
def make_client() -> Iterator[Callable[..., httpx.Client]]:
    """Build sync clients over scripts and close them after the test."""
    clients: list[httpx.Client] = []

    def make(
        script: Script,
        *,
        retry: RetryPolicy = FAST,
        retry_statuses: tuple[int, ...] = (502, 503, 504),
        propagate_headers: bool = True,
    ) -> httpx.Client:
        transport = RetryTransport(
            httpx.MockTransport(script),
            retry=retry,
            retry_statuses=retry_statuses,
            propagate_headers=propagate_headers,
        )
        clients.append(httpx.Client(base_url="http://svc.test", transport=transport))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"])
def test_idempotent_methods_retry_on_retry_status(
    make_client: Callable[..., httpx.Client], method: str
) -> None:
    """Every idempotent method is sent again after a 503 and returns the later answer."""
    script = Script(503, 503, 200)
    response = make_client(script).request(method, "/thing", content=b"body")
    assert response.status_code == 200
    assert [r.method for r in script.requests] == [method] * 3


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_methods_are_sent_once_on_retry_status(
    make_client: Callable[..., httpx.Client], method: str
) -> None:
    """POST and PATCH get a single attempt even when the answer is a 503."""
    script = Script(503, 200)
    response = make_client(script).request(method, "/thing", content=b"body")
    assert response.status_code == 503
    assert len(script.requests) == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_transport_failure_raises_after_one_attempt(
    make_client: Callable[..., httpx.Client], method: str
) -> None:
    """A failed POST or PATCH raises HttpError at once, chained to the httpx error."""
    script = Script(connect_error(), 200)
    with pytest.raises(HttpError, match="after 1 attempt:") as info:
        make_client(script).request(method, "/thing", content=b"body")
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow connect"),
        httpx.ReadTimeout("slow read"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
)
def test_get_retries_connection_errors_and_timeouts(
    make_client: Callable[..., httpx.Client], error: Exception
) -> None:
    """Connection errors, timeouts and dropped connections are retried for GET."""
    script = Script(error, 200)
    assert make_client(script).get("/thing").status_code == 200
    assert len(script.requests) == 2


def test_get_raises_http_error_after_last_attempt(
    make_client: Callable[..., httpx.Client],
) -> None:
    """When every attempt fails at the transport, HttpError chains the last httpx error."""
    script = Script(connect_error())
    with pytest.raises(
        HttpError, match=r"GET http://svc.test/thing failed after 3 attempts"
    ) as info:
        make_client(script).get("/thing")
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(script.requests) == 3


def test_last_retry_status_response_is_returned(
    make_client: Callable[..., httpx.Client],
) -> None:
    """After the last attempt a retry status is returned as-is for raise_for_status."""
    script = Script(503)
    response = make_client(script).get("/thing")
    assert response.status_code == 503
    assert response.text == "status 503"
    assert len(script.requests) == 3
    with pytest.raises(httpx.HTTPStatusError):
        response.raise_for_status()


def test_statuses_outside_retry_statuses_are_not_retried(
    make_client: Callable[..., httpx.Client],
) -> None:
    """A 500 is not in the default retry_statuses and comes back after one attempt."""
    script = Script(500, 200)
    assert make_client(script).get("/thing").status_code == 500
    assert len(script.requests) == 1


def test_custom_retry_statuses(make_client: Callable[..., httpx.Client]) -> None:
    """retry_statuses replaces the default set."""
    script = Script(429, 503, 200)
    response = make_client(script, retry_statuses=(429,)).get("/thing")
    assert response.status_code == 503
    assert len(script.requests) == 2


def test_other_transport_errors_are_not_retried(
    make_client: Callable[..., httpx.Client],
) -> None:
    """Errors a second attempt cannot fix, such as a proxy failure, raise at once."""
    script = Script(httpx.ProxyError("proxy said no"), 200)
    with pytest.raises(HttpError) as info:
        make_client(script).get("/thing")
    assert isinstance(info.value.__cause__, httpx.ProxyError)
    assert len(script.requests) == 1


def test_retry_on_narrows_the_retried_errors(make_client: Callable[..., httpx.Client]) -> None:
    """RetryPolicy.retry_on limits retries to the listed exception types."""
    policy = RetryPolicy(attempts=3, initial_delay=0, jitter=0, retry_on=(httpx.TimeoutException,))
    script = Script(connect_error(), 200)
    with pytest.raises(HttpError):
        make_client(script, retry=policy).get("/thing")
    assert len(script.requests) == 1


def test_attempts_one_never_retries(make_client: Callable[..., httpx.Client]) -> None:
    """attempts=1 sends a GET once."""
    script = Script(503, 200)
    response = make_client(script, retry=RetryPolicy(attempts=1)).get("/thing")
    assert response.status_code == 503
    assert len(script.requests) == 1


def test_retried_put_resends_the_whole_body(make_client: Callable[..., httpx.Client]) -> None:
    """A retried PUT carries the same body on every attempt."""
    script = Script(503, 200)
    make_client(script).put("/thing", content=b"payload")
    assert script.bodies == [b"payload", b"payload"]


def test_streamed_body_is_sent_once(make_client: Callable[..., httpx.Client]) -> None:
    """A PUT whose body is a generator cannot be replayed and gets one attempt."""

    def chunks() -> Iterator[bytes]:
        yield b"pay"
        yield b"load"

    script = Script(503, 200)
    response = make_client(script).put("/thing", content=chunks())
    assert response.status_code == 503
    assert script.bodies == [b"payload"]


def test_backoff_sleeps_between_attempts(make_client: Callable[..., httpx.Client]) -> None:
    """With a non-zero policy the transport still retries to success (delays are tiny)."""
    policy = RetryPolicy(attempts=3, initial_delay=0.001, max_delay=0.002, jitter=0.001)
    script = Script(503, 503, 200)
    assert make_client(script, retry=policy).get("/thing").status_code == 200
    assert len(script.requests) == 3


def test_context_headers_are_propagated(make_client: Callable[..., httpx.Client]) -> None:
    """Bound request, correlation and trace ids travel as headers."""
    script = Script(200)
    with bind_context(
        request_id="req-1", correlation_id="corr-1", trace_id=TRACE_ID, span_id=SPAN_ID
    ):
        make_client(script).get("/thing")
    headers = script.requests[0].headers
    assert headers["X-Request-ID"] == "req-1"
    assert headers["X-Correlation-ID"] == "corr-1"
    assert headers["traceparent"] == f"00-{TRACE_ID}-{SPAN_ID}-01"


def test_explicit_headers_win_over_context(make_client: Callable[..., httpx.Client]) -> None:
    """A header the caller set is never replaced by the context value."""
    script = Script(200)
    with bind_context(request_id="req-1", correlation_id="corr-1", trace_id=TRACE_ID):
        make_client(script).get(
            "/thing", headers={"x-request-id": "mine", "traceparent": "00-mine"}
        )
    headers = script.requests[0].headers
    assert headers.get_list("X-Request-ID") == ["mine"]
    assert headers.get_list("traceparent") == ["00-mine"]
    assert headers["X-Correlation-ID"] == "corr-1"


def test_unbound_context_adds_no_headers(make_client: Callable[..., httpx.Client]) -> None:
    """Without a bound context no propagation header is invented."""
    script = Script(200)
    make_client(script).get("/thing")
    headers = script.requests[0].headers
    assert not {"x-request-id", "x-correlation-id", "traceparent"} & set(headers.keys())


def test_propagation_can_be_turned_off(make_client: Callable[..., httpx.Client]) -> None:
    """propagate_headers=False leaves the request headers alone."""
    script = Script(200)
    with bind_context(request_id="req-1", trace_id=TRACE_ID):
        make_client(script, propagate_headers=False).get("/thing")
    headers = script.requests[0].headers
    assert "x-request-id" not in headers
    assert "traceparent" not in headers


def test_retries_are_logged_without_header_values(
    make_client: Callable[..., httpx.Client], caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry is one WARNING on dtpyfw.http with method, url and attempt; no secrets."""
    script = Script(503, connect_error(), 200)
    client = make_client(script)
    with caplog.at_level(logging.WARNING, logger="dtpyfw.http"):
        client.get("/thing?token=q-secret", headers={"Authorization": "Bearer h-secret"})
    records = [r for r in caplog.records if r.name == "dtpyfw.http"]
    assert [r.levelno for r in records] == [logging.WARNING] * 2
    assert [(r.method, r.url, r.attempt) for r in records] == [  # type: ignore[attr-defined]
        ("GET", "http://svc.test/thing", 1),
        ("GET", "http://svc.test/thing", 2),
    ]
    assert [r.reason for r in records] == ["503", "ConnectError"]  # type: ignore[attr-defined]
    for record in records:
        dumped = f"{record.getMessage()} {record.__dict__}"
        assert "h-secret" not in dumped
        assert "q-secret" not in dumped


def test_transport_close_closes_the_inner_transport() -> None:
    """Closing the wrapper closes what it wraps."""
    inner = RecordingClose(Script(200))
    with RetryTransport(inner, retry=FAST):
        pass
    assert inner.closed


async def test_async_transport_aclose_closes_the_inner_transport() -> None:
    """Closing the async wrapper closes what it wraps."""
    inner = RecordingClose(Script(200))
    async with AsyncRetryTransport(inner, retry=FAST):
        pass
    assert inner.closed


async def test_async_retries_idempotent_and_sends_post_once() -> None:
    """The async twin retries a GET to success and sends a failing POST once."""
    script = Script(503, 200)
    transport = AsyncRetryTransport(httpx.MockTransport(script), retry=FAST)
    async with httpx.AsyncClient(base_url="http://svc.test", transport=transport) as client:
        assert (await client.get("/thing")).status_code == 200
        assert len(script.requests) == 2
        script.outcomes = [503, 200]
        assert (await client.post("/thing", content=b"x")).status_code == 503
        assert len(script.requests) == 3


async def test_async_transport_failure_raises_http_error() -> None:
    """The async twin raises HttpError chained to the httpx error after the last attempt."""
    script = Script(httpx.ReadTimeout("slow"))
    transport = AsyncRetryTransport(httpx.MockTransport(script), retry=FAST)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(HttpError, match="after 3 attempts") as info:
            await client.get("http://svc.test/thing")
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert len(script.requests) == 3


async def test_async_context_headers_are_propagated() -> None:
    """The async twin reads the context of the calling task."""
    script = Script(200)
    transport = AsyncRetryTransport(httpx.MockTransport(script), retry=FAST)
    async with httpx.AsyncClient(transport=transport) as client:
        with bind_context(request_id="req-a", trace_id=TRACE_ID, span_id=SPAN_ID):
            await client.get("http://svc.test/thing", headers={"X-Correlation-ID": "mine"})
    headers = script.requests[0].headers
    assert headers["X-Request-ID"] == "req-a"
    assert headers["X-Correlation-ID"] == "mine"
    assert headers["traceparent"] == f"00-{TRACE_ID}-{SPAN_ID}-01"
