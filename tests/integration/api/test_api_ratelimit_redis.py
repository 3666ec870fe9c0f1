"""Rate limiting on a real Redis: counters shared by instances, 429 with Retry-After."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
import redis
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from dtpyfw.api import ApiSettings, RateLimitSettings, RedisRateLimitStore, create_app, rate_limit
from dtpyfw.core.errors import NotConfigured
from dtpyfw.testing import closing_container, embedded_settings


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/limited", dependencies=[Depends(rate_limit(3, 30, name="limited"))])
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    return router


@pytest.mark.parametrize("algorithm", ["sliding", "fixed"])
def test_instances_share_one_counter(tmp_path: Path, redis_url: str, algorithm: str) -> None:
    """Three calls spread over two instances use up the limit; the fourth is 429 on either."""
    api = ApiSettings(
        rate_limit=RateLimitSettings(backend="redis", algorithm=algorithm, prefix="rl-test:")
    )
    with ExitStack() as stack:
        clients = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            settings = embedded_settings(tmp_path / name, redis={"url": redis_url})
            container = stack.enter_context(closing_container(settings))
            app = create_app(container, routers=[_router()], configure_logs=False, api=api)
            clients.append(stack.enter_context(TestClient(app)))
        first, second = clients
        codes = [
            first.get("/limited").status_code,
            second.get("/limited").status_code,
            first.get("/limited").status_code,
        ]
        blocked = second.get("/limited")
        assert first.app.state.rate_limit_store.__class__ is RedisRateLimitStore  # type: ignore[attr-defined]
    assert codes == [200, 200, 200]
    assert blocked.status_code == 429
    assert blocked.json()["type"] == "urn:dtpyfw:problem:rate-limited"
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    with redis.Redis.from_url(redis_url) as raw:
        keys = raw.keys("rl-test:*")
        assert len(keys) == 1
        assert 0 < raw.pttl(keys[0]) <= 60_000


def test_redis_backend_without_redis_section_fails_at_start(tmp_path: Path) -> None:
    """backend: redis with no redis section stops the app at startup, naming the subsystem."""
    api = ApiSettings(rate_limit=RateLimitSettings(backend="redis"))
    with closing_container(embedded_settings(tmp_path)) as container:
        app = create_app(container, routers=[_router()], configure_logs=False, api=api)
        with pytest.raises(NotConfigured, match="redis"), TestClient(app):
            pass
