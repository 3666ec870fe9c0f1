"""Redis client construction from settings (nothing connects) and the missing-extra error."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import redis
import redis.asyncio
from dependency_injector.errors import Error as ProviderError
from redis.backoff import ExponentialBackoff

import dtpyfw.redis
from dtpyfw.core.errors import DependencyMissing
from dtpyfw.redis import RedisContainer, RedisSettings, create_async_client, create_client

USERNAME = "svc@team"
PASSWORD = "p@ss:w/rd%41"


def test_url_from_parts_escapes_username_and_password() -> None:
    """@, :, / and % in credentials are escaped in the URL and arrive intact in redis-py."""
    settings = RedisSettings(
        host="cache.internal", port=6380, db=3, username=USERNAME, password=PASSWORD
    )
    assert settings.connection_url() == (
        "redis://svc%40team:p%40ss%3Aw%2Frd%2541@cache.internal:6380/3"
    )
    with create_client(settings) as client:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"]) == (USERNAME, PASSWORD)
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.internal", 6380, 3)


def test_password_without_username() -> None:
    """A password alone authenticates as the default user."""
    settings = RedisSettings(password="s:e@cret")
    assert settings.connection_url() == "redis://:s%3Ae%40cret@127.0.0.1:6379/0"
    with create_client(settings) as client:
        assert client.connection_pool.connection_kwargs["password"] == "s:e@cret"


def test_tls_uses_rediss_and_verifies_by_default() -> None:
    """tls gives rediss://, an SSL connection, certificate and host checks, and the CA file."""
    settings = RedisSettings(tls=True, tls_ca_file="/etc/ssl/ca.pem")
    assert settings.connection_url().startswith("rediss://")
    with create_client(settings) as client:
        pool = client.connection_pool
        assert pool.connection_class is redis.SSLConnection
        kwargs = pool.connection_kwargs
        assert kwargs["ssl_cert_reqs"] == "required"
        assert kwargs["ssl_check_hostname"] is True
        assert kwargs["ssl_ca_certs"] == "/etc/ssl/ca.pem"


def test_tls_verification_can_be_turned_off() -> None:
    """tls_verify=False skips the certificate and host name checks."""
    with create_client(RedisSettings(tls=True, tls_verify=False)) as client:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == ("none", False)
        assert "ssl_ca_certs" not in kwargs


def test_plain_connections_get_no_tls_options() -> None:
    """Without TLS no ssl_* option reaches the plain connection class."""
    with create_client(RedisSettings()) as client:
        assert client.connection_pool.connection_class is redis.Connection
        assert not any(key.startswith("ssl") for key in client.connection_pool.connection_kwargs)


def test_url_wins_over_parts() -> None:
    """When url is set, host, port, db and credentials come from it."""
    settings = RedisSettings.model_validate(
        {"url": "rediss://u:pw@from-url:7000/5", "host": "ignored", "port": 1, "tls": False}
    )
    assert settings.connection_url() == "rediss://u:pw@from-url:7000/5"
    with create_client(settings) as client:
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("from-url", 7000, 5)
        assert (kwargs["username"], kwargs["password"]) == ("u", "pw")
        assert pool.connection_class is redis.SSLConnection


def test_pool_timeouts_and_retries_come_from_settings() -> None:
    """Pool size, timeouts, health checks, retries and bytes responses are configured."""
    settings = RedisSettings(
        max_connections=7,
        socket_timeout=1.5,
        connect_timeout=0.5,
        health_check_interval=12,
        retries=4,
    )
    with create_client(settings) as client:
        pool = client.connection_pool
        assert isinstance(pool, redis.BlockingConnectionPool)
        assert pool.max_connections == 7
        kwargs = pool.connection_kwargs
        assert kwargs["socket_timeout"] == 1.5
        assert kwargs["socket_connect_timeout"] == 0.5
        assert kwargs["health_check_interval"] == 12
        assert kwargs["decode_responses"] is False
        retry = kwargs["retry"]
        assert retry.get_retries() == 4
        assert isinstance(retry._backoff, ExponentialBackoff)
        assert kwargs["retry_on_error"] == [redis.ConnectionError, redis.TimeoutError]


async def test_async_client_is_configured_the_same_way() -> None:
    """The asyncio client gets the same URL, pool, TLS and retry options."""
    settings = RedisSettings(username=USERNAME, password=PASSWORD, tls=True, retries=2)
    client = create_async_client(settings)
    try:
        assert isinstance(client, redis.asyncio.Redis)
        pool = client.connection_pool
        assert isinstance(pool, redis.asyncio.BlockingConnectionPool)
        assert pool.connection_class is redis.asyncio.SSLConnection
        kwargs = pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"]) == (USERNAME, PASSWORD)
        assert kwargs["ssl_cert_reqs"] == "required"
        assert kwargs["retry"].get_retries() == 2
        assert kwargs["decode_responses"] is False
    finally:
        await client.aclose()


def test_container_requires_redis_settings() -> None:
    """The container's settings must be RedisSettings."""
    container = RedisContainer(settings={"host": "x"})
    with pytest.raises(ProviderError, match="RedisSettings"):
        container.settings()


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py, creating a client raises DependencyMissing with the pip command."""
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(DependencyMissing, match=r"pip install 'dtpyfw\[redis\]'") as info:
        create_client(RedisSettings())
    assert isinstance(info.value, ImportError)
    with pytest.raises(DependencyMissing, match=r"pip install 'dtpyfw\[redis\]'"):
        create_async_client(RedisSettings())


def test_package_imports_without_redis_installed() -> None:
    """import dtpyfw.redis works when redis-py cannot be imported; using it names the extra."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["redis"] = None
        import dtpyfw.redis
        from dtpyfw.core.errors import DependencyMissing
        container = dtpyfw.redis.RedisContainer(settings=dtpyfw.redis.RedisSettings())
        try:
            container.client()
        except DependencyMissing as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'dtpyfw[redis]'" in result.stdout


def test_all_is_sorted_and_complete() -> None:
    """__all__ lists every public name of the package, sorted."""
    # isidentifier(): pytest's assertion rewriting may add "@py_builtins" to the namespace.
    public = {
        name for name in vars(dtpyfw.redis) if name.isidentifier() and not name.startswith("_")
    }
    assert dtpyfw.redis.__all__ == sorted(dtpyfw.redis.__all__)
    assert set(dtpyfw.redis.__all__) == public
