"""HttpClients and AsyncHttpClients: lookup, caching, settings and closing (no requests)."""

from __future__ import annotations

import httpx
import pytest

from dtpyfw.core.errors import ContainerError, DtpyfwError, NotConfigured
from dtpyfw.http import AsyncHttpClients, HttpClients, HttpSettings

SETTINGS = HttpSettings.model_validate(
    {
        "timeout": 7,
        "connect_timeout": 2,
        "downstreams": {
            "billing": {
                "base_url": "https://billing.internal/api",
                "headers": {"X-Api-Key": "k-123"},
                "timeout": 3,
            },
            "users": {"base_url": "http://users.internal"},
        },
    }
)


def test_get_builds_a_client_from_the_downstream_settings() -> None:
    """base_url, secret headers and the timeout override reach the httpx client."""
    with HttpClients(SETTINGS) as clients:
        billing = clients.get("billing")
        assert isinstance(billing, httpx.Client)
        assert billing.base_url == httpx.URL("https://billing.internal/api/")
        assert billing.headers["X-Api-Key"] == "k-123"
        assert billing.timeout == httpx.Timeout(3, connect=2)
        assert clients.get("users").timeout == httpx.Timeout(7, connect=2)


def test_get_caches_one_client_per_name() -> None:
    """The same name gives the same client; different names give different ones."""
    with HttpClients(SETTINGS) as clients:
        assert clients.get("billing") is clients.get("billing")
        assert clients.get("billing") is not clients.get("users")


def test_unknown_name_lists_the_known_ones() -> None:
    """An unknown downstream is NotConfigured and the message names every known one."""
    with HttpClients(SETTINGS) as clients, pytest.raises(NotConfigured) as info:
        clients.get("billnig")
    assert isinstance(info.value, DtpyfwError)
    assert "'billnig'" in str(info.value)
    assert "known: billing, users" in str(info.value)


def test_unknown_name_without_downstreams() -> None:
    """With no downstreams configured the message says so."""
    with HttpClients(HttpSettings()) as clients, pytest.raises(NotConfigured, match="none"):
        clients.get("billing")


def test_default_client_has_no_base_url() -> None:
    """default is one cached client for absolute URLs with the global timeout."""
    with HttpClients(SETTINGS) as clients:
        default = clients.default
        assert default is clients.default
        assert default.base_url == httpx.URL("")
        assert default.timeout == httpx.Timeout(7, connect=2)
        assert "X-Api-Key" not in default.headers


def test_close_closes_every_client_and_is_idempotent() -> None:
    """close() closes every client handed out; a second close() is harmless."""
    clients = HttpClients(SETTINGS)
    handed_out = [clients.get("billing"), clients.get("users"), clients.default]
    clients.close()
    clients.close()
    assert clients.closed
    assert all(client.is_closed for client in handed_out)


def test_get_after_close_is_an_error() -> None:
    """A closed HttpClients refuses to build new clients instead of leaking them."""
    clients = HttpClients(SETTINGS)
    clients.close()
    with pytest.raises(ContainerError, match="closed"):
        clients.get("billing")
    with pytest.raises(ContainerError, match="closed"):
        _ = clients.default


def test_unclosed_clients_warn() -> None:
    """Dropping HttpClients that built clients without closing them is a ResourceWarning."""
    clients = HttpClients(SETTINGS)
    client = clients.get("billing")
    with pytest.warns(ResourceWarning, match="HttpClients was never closed"):
        del clients
    client.close()


def test_unused_clients_do_not_warn() -> None:
    """HttpClients that never built a client can be dropped silently."""
    clients = HttpClients(SETTINGS)
    del clients


async def test_async_twin_builds_async_clients_and_acloses() -> None:
    """AsyncHttpClients hands out AsyncClient objects and aclose() closes them twice safely."""
    clients = AsyncHttpClients(SETTINGS)
    async with clients:
        billing = clients.get("billing")
        assert isinstance(billing, httpx.AsyncClient)
        assert billing is clients.get("billing")
        assert billing.headers["X-Api-Key"] == "k-123"
        default = clients.default
    await clients.aclose()
    assert billing.is_closed
    assert default.is_closed
    with pytest.raises(ContainerError):
        clients.get("billing")


async def test_async_unknown_name() -> None:
    """The async twin reports unknown names the same way."""
    async with AsyncHttpClients(SETTINGS) as clients:
        with pytest.raises(NotConfigured, match="known: billing, users"):
            clients.get("nope")
