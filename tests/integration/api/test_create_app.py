"""create_app: lifespan, request id, scope commit/rollback, problem details, health routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import BaseModel

from dtpyfw.api import create_app
from dtpyfw.container import ServiceContainerInstance, providers
from dtpyfw.core.errors import IntegrityError, ObjectNotFound, StorageUnavailable
from dtpyfw.core.scope import Scoped
from dtpyfw.testing import closing_container, embedded_settings


class Item(BaseModel):
    name: str
    password: str


@pytest.fixture
def container(tmp_path: Path) -> Iterator[ServiceContainerInstance]:
    with closing_container(embedded_settings(tmp_path)) as built:
        yield built


def _app(container: ServiceContainerInstance, journal: list[str]) -> TestClient:
    router = APIRouter()

    @router.get("/ok")
    async def ok(fail: bool = False) -> dict[str, Any]:
        await container.journal()
        if fail:
            raise ObjectNotFound("no such thing")
        return {"ok": True}

    @router.get("/crash")
    async def crash() -> None:
        await container.journal()
        raise RuntimeError("secret internal detail")

    @router.get("/unavailable")
    async def unavailable() -> None:
        raise StorageUnavailable("bucket host 10.0.0.5 down")

    @router.post("/items")
    async def items(item: Item) -> dict[str, str]:
        return {"name": item.name}

    async def journal_scope() -> AsyncIterator[str]:
        journal.append("open")
        try:
            yield "entry"
        except BaseException as exc:
            journal.append(f"rollback:{type(exc).__name__}")
            raise
        else:
            journal.append("commit")

    container.set_provider("journal", Scoped(journal_scope))
    return TestClient(create_app(container, routers=[router], configure_logs=False))


def test_request_id_is_echoed_or_generated(container: ServiceContainerInstance) -> None:
    """A plain incoming X-Request-ID is kept; a hostile one is replaced."""
    with _app(container, []) as client:
        kept = client.get("/livez", headers={"X-Request-ID": "abc-123"})
        assert kept.headers["x-request-id"] == "abc-123"
        replaced = client.get("/livez", headers={"X-Request-ID": "bad\nid"})
        assert replaced.headers["x-request-id"] != "bad\nid"
        assert len(replaced.headers["x-request-id"]) == 32


def test_scope_commits_on_success_and_rolls_back_on_error(
    container: ServiceContainerInstance,
) -> None:
    """Status < 400 commits; a handled error response or a crash rolls back."""
    journal: list[str] = []
    with _app(container, journal) as client:
        assert client.get("/ok").status_code == 200
        assert journal == ["open", "commit"]
        journal.clear()
        response = client.get("/ok", params={"fail": True})
        assert response.status_code == 404
        assert journal == ["open", "rollback:ErrorResponse"]
    journal.clear()
    with TestClient(_app(container, journal).app, raise_server_exceptions=False) as client:
        response = client.get("/crash")
        assert response.status_code == 500
        assert journal == ["open", "rollback:RuntimeError"]


def test_commit_failure_replaces_the_success_response(container: ServiceContainerInstance) -> None:
    """If closing the scope fails, the client gets the problem, not the 200 it would trust."""

    async def failing_commit() -> AsyncIterator[str]:
        yield "x"
        raise IntegrityError("duplicate key value violates unique constraint")

    router = APIRouter()

    @router.get("/write")
    async def write() -> dict[str, bool]:
        await container.failing()
        return {"written": True}

    container.set_provider("failing", Scoped(failing_commit))
    with TestClient(create_app(container, routers=[router], configure_logs=False)) as client:
        response = client.get("/write", headers={"X-Request-ID": "r-1"})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:dtpyfw:problem:conflict"
    assert response.headers["x-request-id"] == "r-1"


def test_problem_details_do_not_leak_internals(container: ServiceContainerInstance) -> None:
    """4xx explain themselves; 5xx say nothing about the cause; validation omits input."""
    with TestClient(_app(container, []).app, raise_server_exceptions=False) as client:
        not_found = client.get("/ok", params={"fail": True}).json()
        assert not_found["status"] == 404
        assert not_found["detail"] == "no such thing"
        assert not_found["request_id"]
        crash = client.get("/crash")
        assert crash.json() == {
            "type": "urn:dtpyfw:problem:internal-error",
            "title": "Internal Server Error",
            "status": 500,
            "request_id": crash.headers["x-request-id"],
        }
        unavailable = client.get("/unavailable").json()
        assert unavailable["status"] == 503
        assert "10.0.0.5" not in str(unavailable)
        invalid = client.post("/items", json={"name": 5, "password": ["hunter2"]})
        assert invalid.status_code == 422
        assert "hunter2" not in invalid.text
        assert {tuple(e["loc"]) for e in invalid.json()["errors"]} == {
            ("body", "name"),
            ("body", "password"),
        }


def test_livez_and_readyz(container: ServiceContainerInstance) -> None:
    """livez never checks dependencies; readyz is 503 with the failing subsystem named."""

    def broken() -> None:
        raise RuntimeError("password=hunter2 at db host")

    with _app(container, []) as client:
        assert client.get("/livez").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["db"]["ok"] is True
        with container.override(db__ahealth_check=providers.Callable(broken)):
            down = client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["checks"]["db"] == {
            "ok": False,
            "latency_ms": down.json()["checks"]["db"]["latency_ms"],
            "error": "RuntimeError",
        }
        assert "hunter2" not in down.text


def test_lifespan_validates_and_closes_resources(container: ServiceContainerInstance) -> None:
    """Startup initialises resources; shutdown closes them all."""
    with _app(container, []):
        engine_provider = container.db.engine
        assert engine_provider.initialized
    assert not engine_provider.initialized
