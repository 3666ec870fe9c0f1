"""The Redis deny-list against a real redis-server: revocation, rotation, reuse, expiry."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from dtpyfw.config import Settings
from dtpyfw.container import ServiceContainer
from dtpyfw.core.errors import CacheError
from dtpyfw.redis import RedisSettings
from dtpyfw.security import (
    JwtKey,
    KeySet,
    RedisDenyList,
    Rotation,
    TokenRevoked,
    TokenService,
)


@pytest.fixture
def redis_settings(redis_url: str) -> RedisSettings:
    return RedisSettings(url=redis_url)


@pytest.fixture
def deny_list(redis_settings: RedisSettings) -> Iterator[RedisDenyList]:
    created = RedisDenyList(settings=redis_settings, prefix="t:")
    yield created
    created.close()


@pytest.fixture
async def adeny_list(redis_settings: RedisSettings) -> AsyncIterator[RedisDenyList]:
    created = RedisDenyList(settings=redis_settings, prefix="t:")
    yield created
    await created.aclose()


def _service(deny_list: RedisDenyList) -> TokenService:
    return TokenService(
        KeySet([JwtKey.hmac("k", "k" * 32)]), issuer="i", audience="a", deny_list=deny_list
    )


def test_revocations_are_shared_and_expire(deny_list: RedisDenyList, redis_url: str) -> None:
    """A revoked jti is visible to a second instance and expires with its ttl in Redis."""
    deny_list.revoke("jti-1", 30)
    deny_list.revoke_family("fam-1", 60)
    other = RedisDenyList(client=redis.Redis.from_url(redis_url), prefix="t:")
    try:
        assert other.is_revoked("jti-1")
        assert other.is_revoked("unrelated", "fam-1")
        assert not other.is_revoked("jti-2", "fam-2")
    finally:
        other._client.close()  # type: ignore[union-attr]
    with redis.Redis.from_url(redis_url) as raw:
        assert 0 < raw.pttl("t:jti:jti-1") <= 30_000
        assert 30_000 < raw.pttl("t:fam:fam-1") <= 60_000


def test_rotation_is_atomic_and_reuse_revokes(deny_list: RedisDenyList) -> None:
    """rotate: ROTATED for the current token, REUSED (family revoked) for a spent one."""
    deny_list.start_family("f", "r1", 60)
    assert deny_list.rotate("f", "r1", "r2", 60) is Rotation.ROTATED
    assert deny_list.rotate("f", "r1", "r3", 60) is Rotation.REUSED
    assert deny_list.is_revoked("anything", "f")
    assert deny_list.rotate("f", "r2", "r4", 60) is Rotation.UNKNOWN


def test_concurrent_refresh_with_one_token_has_one_winner(
    redis_settings: RedisSettings,
) -> None:
    """Eight threads refreshing the same token at once: exactly one rotation succeeds."""
    deny_list = RedisDenyList(settings=redis_settings, prefix="t:")
    service = _service(deny_list)
    pair = service.issue_pair("u")
    results: list[str] = []
    barrier = threading.Barrier(8)

    def refresh() -> None:
        barrier.wait()
        try:
            service.refresh(pair.refresh_token)
            results.append("ok")
        except TokenRevoked:
            results.append("revoked")

    threads = [threading.Thread(target=refresh) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    deny_list.close()
    assert sorted(results) == ["ok"] + ["revoked"] * 7


async def test_async_flow_through_token_service(adeny_list: RedisDenyList) -> None:
    """Login, refresh, replay: the replay revokes the family for every instance."""
    service = _service(adeny_list)
    pair = await service.aissue_pair("u")
    rotated = await service.arefresh(pair.refresh_token)
    assert (await service.averify(rotated.access_token))["sub"] == "u"
    with pytest.raises(TokenRevoked, match="already used"):
        await service.arefresh(pair.refresh_token)
    with pytest.raises(TokenRevoked):
        await service.averify(rotated.access_token)
    await adeny_list.aping()


def test_redis_down_fails_closed() -> None:
    """With Redis unreachable, verification raises CacheError (503) instead of letting through."""
    settings = RedisSettings(host="127.0.0.1", port=1, connect_timeout=0.2, retries=0)
    deny_list = RedisDenyList(settings=settings)
    service = _service(deny_list)
    token = service.issue_access("u")
    with pytest.raises(CacheError) as caught:
        service.verify(token)
    assert caught.value.http_status == 503
    deny_list.close()


async def test_container_closes_the_clients_it_opened(redis_url: str) -> None:
    """ServiceContainer with deny_list: redis opens clients lazily and closes them at shutdown."""
    settings = Settings.model_validate(
        {
            "security": {
                "keys": [{"kid": "k", "algorithm": "HS256", "secret": "k" * 32}],
                "deny_list": "redis",
            },
            "redis": {"url": redis_url},
        }
    )
    container = ServiceContainer.from_settings(settings)
    container.validate()
    await container.ainit_resources()
    service = container.security.token_service()
    pair = await service.aissue_pair("u")
    service.refresh(pair.refresh_token)  # the sync path opens the sync client
    deny_list = container.security.deny_list()
    assert deny_list._client is not None
    assert deny_list._async_client is not None
    report = await container.ahealth()
    assert report.ok, report
    await container.ashutdown_resources()
    assert deny_list._client is None
    assert deny_list._async_client is None
