"""``/livez`` and ``/readyz`` for a worker process, over plain HTTP from the stdlib.

``dtpyfw worker run --health-port 8081`` serves them so an orchestrator can
probe a worker the way it probes a web service: ``/livez`` answers 200 while
the worker runs (restart it when it does not), ``/readyz`` answers 200 while
it takes tasks and its broker answers (503 while stopping or cut off).
"""

from __future__ import annotations

__all__ = ["HealthServer"]

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dtpyfw.worker._worker import Worker


class HealthServer:
    """Serves a worker's liveness and readiness in a daemon thread; a context manager."""

    def __init__(self, worker: Worker, host: str = "127.0.0.1", port: int = 0) -> None:
        self.worker = worker
        handler = _handler_for(worker)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (useful when it was given 0)."""
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        """Serve in a daemon thread; returns itself."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dtpyfw-worker-health", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; stopping twice is harmless."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(worker: Worker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/livez":
                result = worker.liveness()
            elif self.path.rstrip("/") == "/readyz":
                result = worker.readiness()
            else:
                self._send(404, {"error": "not found; try /livez or /readyz"})
                return
            body: dict[str, Any] = {"worker": worker.id, **result.as_dict()}
            self._send(200 if result.ok else 503, body)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes every few seconds would flood the logs: stay quiet."""

    return Handler
