"""Rate limiting in memory: algorithms, keys, 429 problems with Retry-After, fail-open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from dtpyfw.api import (
    ApiSettings,
    MemoryRateLimitStore,
    RateLimitSettings,
    bearer_user,
    create_app,
    rate_limit,
)
from dtpyfw.container import ServiceContainerInstance
from dtpyfw.security import TokenService
from dtpyfw.testing import closing_container, embedded_settings


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_fixed_window_counts_and_resets() -> None:
    """Fixed: `limit` hits pass, the next waits for the window's end, then the count resets."""
    clock = Clock(1_000.0)  # a window boundary: 1000 s is a multiple of 10 s
    store = MemoryRateLimitStore(clock=clock)
    decisions = [await store.hit("k", 3, 10, "fixed") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert decisions[3].retry_after == pytest.approx(10.0)
    clock.now += 4
    assert (await store.hit("k", 3, 10, "fixed")).retry_after == pytest.approx(6.0)
    clock.now += 6
    assert (await store.hit("k", 3, 10, "fixed")).allowed
    assert (await store.hit("other", 3, 10, "fixed")).allowed


async def test_sliding_window_weighs_the_previous_window() -> None:
    """Sliding: right after a full window the previous count still blocks, then decays."""
    clock = Clock(1_000.0)
    store = MemoryRateLimitStore(clock=clock)
    for _ in range(4):
        assert (await store.hit("k", 4, 10, "sliding")).allowed
    clock.now += 10.0  # next window starts: estimate = 4 * 1.0 + 0
    blocked = await store.hit("k", 4, 10, "sliding")
    assert not blocked.allowed
    assert blocked.retry_after == pytest.approx(2.5)  # 4 * (10 - t) / 10 + 1 <= 4  =>  t >= 2.5
    clock.now += 2.5
    assert (await store.hit("k", 4, 10, "sliding")).allowed
    assert not (await store.hit("k", 4, 10, "sliding")).allowed  # 4*0.75 + 1 + 1 > 4
    clock.now += 20  # two idle windows forget everything
    assert (await store.hit("k", 4, 10, "sliding")).remaining == 3


async def test_sliding_window_over_limit_in_current_window() -> None:
    """When the current window alone is full the wait reaches into the next window."""
    clock = Clock(1_000.0)
    store = MemoryRateLimitStore(clock=clock)
    for _ in range(2):
        await store.hit("k", 2, 10, "sliding")
    blocked = await store.hit("k", 2, 10, "sliding")
    assert not blocked.allowed
    # next window starts in 10 s with previous=2: 2*(10-t)/10 + 1 <= 2  =>  t >= 5
    assert blocked.retry_after == pytest.approx(15.0)
    clock.now += 15
    assert (await store.hit("k", 2, 10, "sliding")).allowed


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/limited", dependencies=[Depends(rate_limit(2, 60))])
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    @router.get(
        "/per-user", dependencies=[Depends(bearer_user), Depends(rate_limit(1, 60, name="u"))]
    )
    async def per_user() -> dict[str, bool]:
        return {"ok": True}

    @router.get("/by-key", dependencies=[Depends(rate_limit(1, 60))])
    async def by_key() -> dict[str, bool]:
        return {"ok": True}

    return router


@pytest.fixture
def container(tmp_path: Path) -> Iterator[ServiceContainerInstance]:
    settings = embedded_settings(
        tmp_path, security={"keys": [{"kid": "k", "algorithm": "HS256", "secret": "k" * 32}]}
    )
    with closing_container(settings) as built:
        yield built


def _client(container: ServiceContainerInstance, **rate: Any) -> TestClient:
    api = ApiSettings(rate_limit=RateLimitSettings(**rate))
    return TestClient(create_app(container, routers=[_router()], configure_logs=False, api=api))


def test_route_limit_answers_429_problem_with_retry_after(
    container: ServiceContainerInstance,
) -> None:
    """The third call in a minute is a 429 problem with Retry-After in whole seconds."""
    with _client(container, algorithm="fixed") as client:
        assert [client.get("/limited").status_code for _ in range(2)] == [200, 200]
        blocked = client.get("/limited")
    assert blocked.status_code == 429
    assert blocked.headers["content-type"] == "application/problem+json"
    assert blocked.json()["type"] == "urn:dtpyfw:problem:rate-limited"
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    assert blocked.headers["x-request-id"]


def test_limits_are_per_user_per_key_and_per_address(container: ServiceContainerInstance) -> None:
    """After auth the counter is the user's; API keys and addresses get their own counters."""
    tokens: TokenService = container.security.token_service()
    alice = {"Authorization": f"Bearer {tokens.issue_access('alice')}"}
    bob = {"Authorization": f"Bearer {tokens.issue_access('bob')}"}
    with _client(container) as client:
        assert client.get("/per-user", headers=alice).status_code == 200
        assert client.get("/per-user", headers=alice).status_code == 429
        assert client.get("/per-user", headers=bob).status_code == 200
        assert client.get("/by-key", headers={"X-API-Key": "one"}).status_code == 200
        assert client.get("/by-key", headers={"X-API-Key": "one"}).status_code == 429
        assert client.get("/by-key", headers={"X-API-Key": "two"}).status_code == 200
        assert client.get("/by-key").status_code == 200  # the address's own counter
        assert client.get("/by-key").status_code == 429


def test_app_wide_limit_spares_health_probes(container: ServiceContainerInstance) -> None:
    """api.rate_limit.limit counts every route except exempt paths such as /livez."""
    with _client(container, limit=3, window=60) as client:
        assert [client.get("/livez").status_code for _ in range(10)] == [200] * 10
        codes = [client.get("/limited").status_code for _ in range(2)]
        codes += [client.get("/by-key").status_code, client.get("/by-key").status_code]
    assert codes == [200, 200, 200, 429]


def test_store_failure_lets_requests_through(
    container: ServiceContainerInstance, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken counter store must not take the service down: allowed, and a warning logged."""

    class Broken:
        async def hit(self, *args: Any) -> Any:
            raise ConnectionError("redis down")

    with _client(container) as client:
        client.app.state.rate_limit_store = Broken()  # type: ignore[attr-defined]
        with caplog.at_level("WARNING", logger="dtpyfw.api"):
            codes = [client.get("/limited").status_code for _ in range(5)]
    assert codes == [200] * 5
    assert any("rate limiter unavailable" in r.getMessage() for r in caplog.records)


def test_invalid_limits_are_refused() -> None:
    """A limit below 1 or a non-positive window is a programming error."""
    with pytest.raises(ValueError, match="limit"):
        rate_limit(0)
    with pytest.raises(ValueError, match="window"):
        rate_limit(1, 0)
