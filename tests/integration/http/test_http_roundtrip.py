"""HttpClients, AsyncHttpClients and HttpContainer against a real HTTP server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import httpx
import pytest

from dtpyfw.core.context import bind_context
from dtpyfw.core.errors import HttpError
from dtpyfw.http import AsyncHttpClients, HttpClients, HttpContainer, HttpSettings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"

FailMode = Literal["503", "drop"]


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Downstream:
    """The server's shared state: what it saw and how many requests it should fail."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    failures: int = 0
    mode: FailMode = "503"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int, mode: FailMode) -> None:
        """Answer the next ``count`` requests with a 503, or by closing the connection."""
        with self.lock:
            self.failures, self.mode = count, mode

    def methods(self) -> list[str]:
        """The methods received so far, in order."""
        with self.lock:
            return [request.method for request in self.seen]

    def record(self, request: Seen) -> FailMode | None:
        """Remember ``request`` and say how to fail it, if at all."""
        with self.lock:
            self.seen.append(request)
            if self.failures == 0:
                return None
            self.failures -= 1
            return self.mode


class Handler(BaseHTTPRequestHandler):
    """Answers 200 with the path, or fails as the Downstream says."""

    protocol_version = "HTTP/1.1"
    server: Server

    def handle_any(self) -> None:
        """Read the request, record it, then answer or fail."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        seen = Seen(self.command, self.path, dict(self.headers.items()), body)
        failure = self.server.downstream.record(seen)
        if failure == "drop":
            self.close_connection = True
            return
        status = 503 if failure == "503" else 200
        payload = f"{self.command} {self.path}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        """Serve a GET."""
        self.handle_any()

    def do_POST(self) -> None:
        """Serve a POST."""
        self.handle_any()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


class Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that carries its Downstream state."""

    daemon_threads = True

    def __init__(self, downstream: Downstream) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.downstream = downstream


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    """A real HTTP server on 127.0.0.1 with a free port, stopped after the test."""
    state = Downstream()
    server = Server(state)
    host, port = server.server_address[:2]
    state.url = f"http://{host!s}:{port}"
    # A short poll interval keeps shutdown() from waiting out the default 0.5 s.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="downstream", daemon=True
    )
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def settings(downstream: Downstream) -> HttpSettings:
    """Settings with one downstream pointing at the server and tiny retry delays."""
    return HttpSettings.model_validate(
        {
            "timeout": 5,
            "retry": {"attempts": 3, "initial_delay": 0.001, "jitter": 0},
            "downstreams": {
                "svc": {"base_url": downstream.url, "headers": {"X-Api-Key": "k-123"}},
            },
        }
    )


@pytest.mark.parametrize("mode", ["503", "drop"])
def test_get_is_retried_until_it_succeeds(
    downstream: Downstream, settings: HttpSettings, mode: FailMode
) -> None:
    """A GET that meets two 503s or two dropped connections succeeds on the third try."""
    downstream.fail_next(2, mode)
    with HttpClients(settings) as clients:
        response = clients.get("svc").get("/items")
    assert response.status_code == 200
    assert response.text == "GET /items"
    assert downstream.methods() == ["GET"] * 3


@pytest.mark.parametrize("mode", ["503", "drop"])
def test_post_is_sent_exactly_once(
    downstream: Downstream, settings: HttpSettings, mode: FailMode
) -> None:
    """A failing POST reaches the server exactly once, whether it got a 503 or a drop."""
    downstream.fail_next(1, mode)
    with HttpClients(settings) as clients:
        client = clients.get("svc")
        if mode == "503":
            assert client.post("/orders", json={"n": 1}).status_code == 503
        else:
            with pytest.raises(HttpError):
                client.post("/orders", json={"n": 1})
    assert downstream.methods() == ["POST"]
    assert downstream.seen[0].body == b'{"n":1}'


def test_transport_failure_after_last_try_raises_http_error(
    downstream: Downstream, settings: HttpSettings
) -> None:
    """When every attempt is dropped, HttpError is raised with the httpx error as cause."""
    downstream.fail_next(3, "drop")
    with HttpClients(settings) as clients, pytest.raises(HttpError, match="3 attempts") as info:
        clients.get("svc").get("/items")
    assert isinstance(info.value.__cause__, httpx.TransportError)
    assert downstream.methods() == ["GET"] * 3


def test_retry_status_after_last_try_is_returned(
    downstream: Downstream, settings: HttpSettings
) -> None:
    """When every attempt is a 503, the last 503 comes back for raise_for_status."""
    downstream.fail_next(3, "503")
    with HttpClients(settings) as clients:
        response = clients.get("svc").get("/items")
    assert response.status_code == 503
    assert downstream.methods() == ["GET"] * 3


def test_context_and_configured_headers_reach_the_server(
    downstream: Downstream, settings: HttpSettings
) -> None:
    """Request, correlation and trace ids plus the downstream's API key arrive at the server."""
    with (
        HttpClients(settings) as clients,
        bind_context(
            request_id="req-1", correlation_id="corr-1", trace_id=TRACE_ID, span_id=SPAN_ID
        ),
    ):
        clients.get("svc").get("/items", headers={"X-Correlation-ID": "caller"})
        clients.default.get(f"{downstream.url}/absolute")
    by_path = {request.path: request.headers for request in downstream.seen}
    assert by_path["/items"]["X-Request-ID"] == "req-1"
    assert by_path["/items"]["X-Correlation-ID"] == "caller"
    assert by_path["/items"]["traceparent"] == f"00-{TRACE_ID}-{SPAN_ID}-01"
    assert by_path["/items"]["X-Api-Key"] == "k-123"
    assert by_path["/absolute"]["X-Request-ID"] == "req-1"
    assert "X-Api-Key" not in by_path["/absolute"]


async def test_async_get_is_retried_and_post_sent_once(
    downstream: Downstream, settings: HttpSettings
) -> None:
    """The async twin retries a dropped GET and sends a failing POST once."""
    async with AsyncHttpClients(settings) as clients:
        client = clients.get("svc")
        downstream.fail_next(2, "drop")
        assert (await client.get("/items")).status_code == 200
        downstream.fail_next(1, "503")
        assert (await client.post("/orders", content=b"x")).status_code == 503
    assert downstream.methods() == ["GET", "GET", "GET", "POST"]


async def test_async_transport_failure_raises_http_error(
    downstream: Downstream, settings: HttpSettings
) -> None:
    """The async twin raises HttpError chained to the httpx error after the last try."""
    downstream.fail_next(3, "drop")
    async with AsyncHttpClients(settings) as clients:
        with pytest.raises(HttpError) as info:
            await clients.get("svc").get("/items")
    assert isinstance(info.value.__cause__, httpx.TransportError)
    assert downstream.methods() == ["GET"] * 3


async def test_async_context_headers_reach_the_server(
    downstream: Downstream, settings: HttpSettings
) -> None:
    """The async twin propagates the context bound in the calling task."""
    async with AsyncHttpClients(settings) as clients:
        with bind_context(request_id="req-a", trace_id=TRACE_ID, span_id=SPAN_ID):
            await clients.get("svc").get("/items")
    headers = downstream.seen[0].headers
    assert headers["X-Request-ID"] == "req-a"
    assert headers["traceparent"] == f"00-{TRACE_ID}-{SPAN_ID}-01"
    assert "X-Correlation-ID" not in headers


def test_container_resource_closes_clients_on_shutdown(
    downstream: Downstream, settings: HttpSettings
) -> None:
    """Clients from the sync Resource are closed by container.shutdown_resources()."""
    container = HttpContainer(settings=settings)
    clients = container.clients()
    assert isinstance(clients, HttpClients)
    assert container.clients() is clients
    client = clients.get("svc")
    assert client.get("/items").status_code == 200
    assert container.shutdown_resources() is None  # sync Resources shut down at once
    assert clients.closed
    assert client.is_closed


async def test_container_async_resource_closes_clients_on_shutdown(
    downstream: Downstream, settings: HttpSettings
) -> None:
    """Clients from the async Resource are closed by await container.shutdown_resources()."""
    container = HttpContainer(settings=settings)
    clients = await container.async_clients.async_()
    assert isinstance(clients, AsyncHttpClients)
    client = clients.get("svc")
    assert (await client.get("/items")).status_code == 200
    shutdown = container.shutdown_resources()
    assert shutdown is not None  # an async Resource makes shutdown awaitable
    await shutdown
    assert clients.closed
    assert client.is_closed
