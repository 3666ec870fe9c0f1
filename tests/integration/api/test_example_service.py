"""The example service end to end: database, storage, bus and auth through the container."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from examples.notes_service import build_app, build_container

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    env = {
        "NOTES_DB": str(tmp_path / "notes.sqlite3"),
        "NOTES_STORAGE": str(tmp_path / "objects"),
        "NOTES_BCRYPT_ROUNDS": "10",
    }
    container = build_container(env=env, env_file=None)
    with TestClient(build_app(container)) as test_client:
        yield test_client


def _login(client: TestClient | httpx.Client) -> dict[str, str]:
    """Log in as the demo user; the Authorization header of its access token."""
    response = client.post("/auth/login", json={"username": "demo", "password": "demo-password"})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_create_read_list_and_events(client: TestClient, tmp_path: Path) -> None:
    """A note round-trips through SQLite and local storage and is announced on the bus."""
    created = client.post(
        "/notes", json={"title": "hello", "body": "first note"}, headers=_login(client)
    )
    assert created.status_code == 201, created.text
    note = created.json()
    fetched = client.get(f"/notes/{note['id']}").json()
    assert fetched["body"] == "first note"
    assert fetched["size"] == len(b"first note")
    assert (tmp_path / "objects" / "notes" / f"{note['id']}.txt").read_bytes() == b"first note"
    assert [n["id"] for n in client.get("/notes").json()["items"]] == [note["id"]]
    events = client.get("/events").json()
    assert [e["type"] for e in events] == ["note.created"]
    assert events[0]["subject"] == note["id"]


def test_missing_note_and_invalid_input_are_problems(client: TestClient) -> None:
    """404 and 422 come back as problem details."""
    missing = client.get(f"/notes/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    invalid = client.post("/notes", json={"title": "", "body": "x"}, headers=_login(client))
    assert invalid.status_code == 422
    assert client.get("/notes").json() == {"items": [], "total": 0, "limit": 20, "offset": 0}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_module_entry_point_serves_on_loopback(tmp_path: Path) -> None:
    """`python -m examples.notes_service` (what `make run` starts) prints its URL and serves."""
    port = _free_port()
    env = {
        **os.environ,
        "NOTES_DB": str(tmp_path / "n.sqlite3"),
        "NOTES_STORAGE": str(tmp_path / "o"),
        "NOTES_BCRYPT_ROUNDS": "10",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.notes_service", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith(f"notes service: http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)  # polling a condition with a deadline, not a fixed wait
        assert response.status_code == 200
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            created = http.post("/notes", json={"title": "t", "body": "b"}, headers=_login(http))
        assert created.status_code == 201
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()
