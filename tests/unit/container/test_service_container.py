"""ServiceContainer: composition, absent subsystems, override, validate, lifecycle, health."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dtpyfw.config import Settings, load_settings
from dtpyfw.container import ServiceContainer, ServiceContainerInstance, containers, providers
from dtpyfw.core.errors import (
    ContainerError,
    NotConfigured,
    ScopeError,
    ValidationFailed,
    WiringError,
)
from dtpyfw.storage import MemoryStorage
from dtpyfw.testing import closing_container, embedded_settings

from . import wired_module


@pytest.fixture
def container(tmp_path: Path) -> Iterator[ServiceContainerInstance]:
    with closing_container(embedded_settings(tmp_path)) as built:
        yield built


def test_absent_subsystem_is_not_built_and_says_how_to_enable(
    container: ServiceContainerInstance,
) -> None:
    """Resolving a provider of a subsystem missing from the settings names the section to add."""
    assert container.subsystems == {
        "http": True,
        "db": True,
        "storage": True,
        "messaging": True,
        "redis": False,
        "kafka": False,
        "ftp": False,
        "security": False,
        "worker": False,
    }
    with pytest.raises(
        NotConfigured,
        match=r"redis\.client: subsystem 'redis' is not configured; add a `redis:` section",
    ):
        container.redis.client()


def test_configured_subsystems_resolve(container: ServiceContainerInstance) -> None:
    """Embedded settings give real objects for storage and the settings themselves."""
    assert isinstance(container.storage.store(), MemoryStorage)
    assert container.settings().service.name == "test-service"


def test_override_whole_subsystem_by_name_and_restore(container: ServiceContainerInstance) -> None:
    """override(storage=x) replaces the subsystem's main provider until the block ends."""
    original = container.storage.store()
    fake = MemoryStorage()
    with container.override(storage=fake):
        assert container.storage.store() is fake
    assert container.storage.store() is original


def test_override_nested_provider_by_path(container: ServiceContainerInstance) -> None:
    """db__session and "db.session" both name the nested provider; exit restores it."""
    sentinel = object()
    with container.override(db__session=sentinel), container.scope():
        assert container.db.session() is sentinel
    with container.override(**{"db.session": providers.Object(sentinel)}), container.scope():
        assert container.db.session() is sentinel
    with container.scope():
        assert container.db.session() is not sentinel


def test_override_without_with_is_undone_by_reset(container: ServiceContainerInstance) -> None:
    """The handle restores on reset(), and resetting twice is harmless."""
    handle = container.override(storage=MemoryStorage())
    overridden = container.storage.store()
    handle.reset()
    handle.reset()
    assert container.storage.store() is not overridden


def test_override_unknown_path_lists_known_names(container: ServiceContainerInstance) -> None:
    """A typo in an override path is an error listing what exists."""
    with pytest.raises(ContainerError, match=r"no provider 'db.sesion'; known: .*session"):
        container.override(db__sesion=object())


def test_override_of_container_without_primary_asks_for_a_provider() -> None:
    """Overriding a user sub-container by name alone asks which provider is meant."""

    class Extra(containers.DeclarativeContainer):
        thing = providers.Object(1)

    class MyContainer(ServiceContainer):
        extra = providers.Container(Extra)

    built = MyContainer.from_settings(Settings.model_validate({}))
    with pytest.raises(
        ContainerError, match=r"'extra' is a container; name one of its providers \(thing\)"
    ):
        built.override(extra=2)


def test_validate_passes_for_embedded_settings(container: ServiceContainerInstance) -> None:
    """An embedded container validates without connecting anywhere."""
    container.validate()


def test_validate_reports_every_problem_with_paths() -> None:
    """Missing dependencies and dependencies on unconfigured subsystems are each named."""

    class Needs(containers.DeclarativeContainer):
        api_key = providers.Dependency(instance_of=str)
        client = providers.Factory(dict, key=api_key)

    class MyContainer(ServiceContainer):
        needs = providers.Container(Needs)
        cache_user = providers.Factory(list, ServiceContainer.redis.client)

    built = MyContainer.from_settings(Settings.model_validate({}))
    with pytest.raises(ValidationFailed) as exc:
        built.validate()
    problems = exc.value.problems
    assert "needs.api_key: dependency is not provided" in problems
    assert any(
        p.startswith("cache_user: depends on redis.client, but subsystem 'redis' is not configured")
        for p in problems
    )


def test_validate_finds_cycles() -> None:
    """A cycle introduced by overriding is reported with its path."""

    class Loop(containers.DeclarativeContainer):
        a = providers.Factory(list)
        b = providers.Factory(list, a)

    class MyContainer(ServiceContainer):
        loop = providers.Container(Loop)

    built = MyContainer.from_settings(Settings.model_validate({}))
    built.loop.a.override(providers.Factory(list, built.loop.b))
    with pytest.raises(ValidationFailed, match="dependency cycle: loop"):
        built.validate()


def _ordered_container(log: list[str]) -> ServiceContainerInstance:
    def first() -> Iterator[str]:
        log.append("init first")
        yield "first"
        log.append("close first")

    def second(dep: str) -> Iterator[str]:
        log.append(f"init second({dep})")
        yield "second"
        log.append("close second")

    async def third(dep: str) -> AsyncIterator[str]:
        log.append(f"init third({dep})")
        yield "third"
        log.append("close third")

    class Res(containers.DeclarativeContainer):
        b = providers.Resource(second, providers.Resource(first))
        c = providers.Resource(third, b)

    class MyContainer(ServiceContainer):
        res = providers.Container(Res)

    return MyContainer.from_settings(Settings.model_validate({}))


def test_sync_resources_init_in_order_and_close_in_reverse() -> None:
    """Dependencies start first and close last; a second shutdown does nothing."""
    log: list[str] = []
    built = _ordered_container(log)
    built.init_resources()
    assert log == ["init first", "init second(first)"]
    built.shutdown_resources()
    built.shutdown_resources()
    assert log[2:] == ["close second", "close first"]


def test_async_lifecycle_closes_everything_in_reverse() -> None:
    """ainit/ashutdown handle sync and async resources together, in order."""
    log: list[str] = []
    built = _ordered_container(log)

    async def run() -> None:
        async with built.arunning():
            assert log == ["init first", "init second(first)", "init third(second)"]
        await built.ashutdown_resources()

    asyncio.run(run())
    assert log[3:] == ["close third", "close second", "close first"]


def test_sync_shutdown_refuses_to_leak_async_resources() -> None:
    """With an async resource open, the sync shutdown closes nothing and says what to call."""
    log: list[str] = []
    built = _ordered_container(log)

    async def run() -> None:
        await built.ainit_resources()
        with pytest.raises(ContainerError, match=r"await container.ashutdown_resources\(\)"):
            built.shutdown_resources()
        assert not [entry for entry in log if entry.startswith("close")]
        await built.ashutdown_resources()

    asyncio.run(run())
    assert log[3:] == ["close third", "close second", "close first"]


def test_request_scope_sync_and_async(container: ServiceContainerInstance) -> None:
    """Scoped providers need a scope; within one they are cached, across scopes not."""
    with pytest.raises(ScopeError):
        container.db.session()
    with container.scope():
        first = container.db.session()
        assert container.db.session() is first
    with container.scope():
        assert container.db.session() is not first

    async def run() -> None:
        async with container.ascope():
            session = await container.db.async_session()
            assert await container.db.async_session() is session

    asyncio.run(run())


def test_health_reports_each_subsystem(container: ServiceContainerInstance) -> None:
    """Every configured subsystem with a ping reports ok, sync and async."""
    report = container.health()
    assert report.ok
    assert {r.name for r in report.results} >= {"db", "storage"}
    areport = asyncio.run(container.ahealth())
    assert areport.ok
    assert {r.name for r in areport.results} == {r.name for r in report.results}


def test_health_failure_and_timeout_are_reported(container: ServiceContainerInstance) -> None:
    """A failing ping names its error; a hung ping times out without holding the caller."""
    release = threading.Event()

    def hang() -> None:
        release.wait(10)

    def broken() -> None:
        raise RuntimeError("disk on fire")

    try:
        with container.override(
            storage__health_check=providers.Callable(hang),
            db__health_check=providers.Callable(broken),
        ):
            report = container.health(timeout=0.2)
    finally:
        release.set()
    by_name = {r.name: r for r in report.results}
    assert not report.ok
    assert by_name["db"].error == "RuntimeError: disk on fire"
    assert by_name["storage"].error == "timed out after 0.2s"
    assert by_name["storage"].latency_ms < 5000


def test_ahealth_times_out_async_pings(container: ServiceContainerInstance) -> None:
    """An async ping that never answers is cut at the timeout."""

    async def never() -> None:
        await asyncio.Event().wait()

    with container.override(db__ahealth_check=providers.Callable(never)):
        report = asyncio.run(container.ahealth(timeout=0.1))
    assert {r.name: r.ok for r in report.results}["db"] is False


def test_graph_text_and_mermaid(container: ServiceContainerInstance) -> None:
    """The graph names providers, their dependencies and what is not configured."""
    text = container.graph("text")
    assert "db.session (Scoped)" in text
    assert "    -> db.database" in text
    assert "# not configured: redis" in text
    mermaid = container.graph("mermaid")
    assert mermaid.startswith("flowchart LR")
    assert "db__session --> db__database" in mermaid


def test_wired_module_receives_providers(container: ServiceContainerInstance) -> None:
    """After wire(modules=...), @inject functions get their providers."""
    container.wire(modules=[wired_module])
    try:
        assert wired_module.current_service_name() == "test-service"
        assert asyncio.run(wired_module.async_store_kind()) == "MemoryStorage"
    finally:
        container.unwire()


def test_unwired_module_names_the_module_to_wire() -> None:
    """Using Provide[...] in a module nobody wired raises WiringError naming that module."""
    with pytest.raises(WiringError) as exc:
        wired_module.current_service_name()
    message = str(exc.value)
    assert "module 'tests.unit.container.wired_module' is not wired" in message
    assert "container.wire(modules=['tests.unit.container.wired_module'])" in message


def test_from_yaml_and_from_env(tmp_path: Path) -> None:
    """Both constructors go through load_settings with the container's settings class."""
    config = tmp_path / "c.yaml"
    config.write_text("service:\n  name: yaml-svc\nstorage:\n  backend: memory\n")
    built = ServiceContainer.from_yaml(config, env={}, env_file=None)
    assert built.settings().service.name == "yaml-svc"
    assert built.subsystems["storage"] is True
    from_env = ServiceContainer.from_env(env={"DTPYFW_SERVICE__NAME": "env-svc"}, env_file=None)
    assert from_env.settings().service.name == "env-svc"


def test_subclass_settings_class_is_used(tmp_path: Path) -> None:
    """A container subclass with its own Settings subclass loads that class."""
    from pydantic import BaseModel

    class Extra(BaseModel):
        flag: bool = False

    class MySettings(Settings):
        extra: Extra = Extra()

    class MyContainer(ServiceContainer):
        settings_class = MySettings

    config = tmp_path / "c.yaml"
    config.write_text("extra:\n  flag: true\n")
    built = MyContainer.from_yaml(config, env={}, env_file=None)
    settings: Any = built.settings()
    assert settings.extra.flag is True
    assert isinstance(
        load_settings(config, env={}, env_file=None, settings_class=MySettings), MySettings
    )
