"""ServiceContainer: composes the subsystem containers from one Settings object."""

from __future__ import annotations

__all__ = ["ServiceContainer", "ServiceContainerInstance"]

import asyncio
import concurrent.futures
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, cast

from dependency_injector import containers, providers

from dtpyfw.config import Settings, load_settings
from dtpyfw.container._graph import ProviderIndex, render_graph
from dtpyfw.core.errors import ContainerError, NotConfigured, ValidationFailed
from dtpyfw.core.health import HealthReport, HealthResult
from dtpyfw.core.scope import Scope, ascope, scope
from dtpyfw.db._container import DatabaseContainer
from dtpyfw.ftp._container import FtpContainer
from dtpyfw.http._container import HttpContainer
from dtpyfw.kafka._container import KafkaContainer
from dtpyfw.messaging._container import MessagingContainer
from dtpyfw.redis._container import RedisContainer
from dtpyfw.security._container import SecurityContainer
from dtpyfw.storage._container import StorageContainer
from dtpyfw.worker._container import WorkerContainer

#: What ``override(storage=...)`` means when it names a whole subsystem.
PRIMARY_PROVIDER = {
    "db": "database",
    "storage": "store",
    "messaging": "bus",
    "redis": "client",
    "kafka": "producer",
    "ftp": "client",
    "http": "clients",
    "security": "token_service",
    "worker": "queue",
}
DEFAULT_HEALTH_TIMEOUT = 2.0


class ServiceContainerInstance(containers.DynamicContainer):
    """What ``ServiceContainer.from_settings(...)`` returns: providers plus lifecycle."""

    # -- request scope -------------------------------------------------------------
    def scope(self) -> contextlib.AbstractContextManager[Scope]:
        """A sync request scope: scoped providers live until it closes (also on error)."""
        return scope()

    def ascope(self) -> contextlib.AbstractAsyncContextManager[Scope]:
        """Async twin of :meth:`scope`."""
        return ascope()

    # -- overriding ----------------------------------------------------------------
    def override(  # type: ignore[override]  # also takes keyword providers
        self, overriding: Any = None, /, **values: Any
    ) -> _Overriding:
        """Override providers by path; the result restores them as a context manager.

        ``override(storage=MemoryStorage())`` replaces a subsystem's main provider;
        ``override(db__session=fake)`` (or ``**{"db.session": fake}``) names one
        inside a subsystem. Values that are not providers are wrapped in
        ``providers.Object``. Passing a container overrides as dependency-injector does.
        """
        if overriding is not None:
            if values:
                raise TypeError("override() takes a container or keyword providers, not both")
            super().override(overriding)
            return _Overriding([], container=self)
        targets = [(self._provider_at(name), value) for name, value in values.items()]
        applied: list[providers.Provider[Any]] = []
        for provider, value in targets:
            provider.override(value if providers.is_provider(value) else providers.Object(value))
            applied.append(provider)
        return _Overriding(applied)

    def _provider_at(self, name: str) -> providers.Provider[Any]:
        parts = name.replace("__", ".").split(".")
        node: Any = self
        walked: list[str] = []
        for part in parts:
            try:
                node = getattr(node, part) if walked else self.providers[part]
            except (AttributeError, KeyError):
                raise ContainerError(
                    f"override: no provider {'.'.join([*walked, part])!r}; "
                    f"known: {', '.join(sorted(_names(node)))}"
                ) from None
            walked.append(part)
        if isinstance(node, providers.Container):
            primary = PRIMARY_PROVIDER.get(walked[-1]) if len(walked) == 1 else None
            if primary is None:
                raise ContainerError(
                    f"override: {name!r} is a container; name one of its providers "
                    f"({', '.join(sorted(node.container.providers))})"
                )
            node = getattr(node, primary)
        return node  # type: ignore[no-any-return]

    # -- validation ----------------------------------------------------------------
    def validate(self) -> None:
        """Check the graph without connecting anywhere; raise :class:`ValidationFailed`.

        Every Dependency must be provided, nothing may depend on an unconfigured
        subsystem, and the graph must have no cycles. Each problem names the path.
        """
        index = self._index()
        problems: list[str] = []
        for provider, path in index.present():
            if isinstance(provider, providers.Dependency) and not provider.is_defined:
                problems.append(f"{path}: dependency is not provided")
            for dep in _related(provider):
                owner = index.absent_owner(dep)
                if owner is not None:
                    problems.append(
                        f"{path}: depends on {index.path(dep)}, but subsystem {owner!r} "
                        f"is not configured (add a `{owner}:` section to the settings)"
                    )
        problems.extend(_cycles(index))
        if problems:
            raise ValidationFailed(problems)

    # -- resources -----------------------------------------------------------------
    def init_resources(self) -> None:  # type: ignore[override]
        """Initialise sync resources in dependency order (async ones start on first use)."""
        for resource in self._resources():
            if not _is_async(resource):
                resource.init()

    async def ainit_resources(self) -> None:
        """Initialise every resource, sync and async, in dependency order."""
        for resource in self._resources():
            result = resource.init()
            if inspect.isawaitable(result):
                await result

    def shutdown_resources(self) -> None:  # type: ignore[override]
        """Close sync resources in reverse order; closing twice is harmless.

        Raises :class:`ContainerError`, closing nothing, if an async resource is
        open: only :meth:`ashutdown_resources` can close it, and closing what it
        depends on first would break the reverse order.
        """
        ordered = [r for r in reversed(self._resources()) if r.initialized]
        pending_async = [r for r in ordered if _is_async(r)]
        if pending_async:
            raise ContainerError(
                f"{len(pending_async)} async resource(s) are open: "
                "call `await container.ashutdown_resources()` to close everything"
            )
        errors: list[BaseException] = []
        for resource in ordered:
            try:
                resource.shutdown()
            except Exception as exc:  # close the others before reporting
                errors.append(exc)
        _raise_collected(errors)

    async def ashutdown_resources(self) -> None:
        """Close every resource in reverse order, awaiting async ones."""
        errors: list[BaseException] = []
        for resource in reversed(self._resources()):
            if not resource.initialized:
                continue
            try:
                result = resource.shutdown()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                errors.append(exc)
        _raise_collected(errors)

    @contextlib.contextmanager
    def running(self) -> Iterator[ServiceContainerInstance]:
        """``validate`` + ``init_resources`` on entry, ``shutdown_resources`` on exit."""
        self.validate()
        self.init_resources()
        try:
            yield self
        finally:
            self.shutdown_resources()

    @contextlib.asynccontextmanager
    async def arunning(self) -> AsyncIterator[ServiceContainerInstance]:
        """Async twin of :meth:`running`."""
        self.validate()
        await self.ainit_resources()
        try:
            yield self
        finally:
            await self.ashutdown_resources()

    # -- health --------------------------------------------------------------------
    def health(self, timeout: float | None = None) -> HealthReport:
        """Ping every configured subsystem in parallel threads, each within its timeout."""
        checks = self._health_checks(timeout)
        if not checks:
            return HealthReport(())
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=len(checks), thread_name_prefix="dtpyfw-health"
        )
        try:
            started = {
                name: (time.perf_counter(), pool.submit(_run_sync, check.sync))
                for name, check in checks.items()
            }
            results = []
            for name, (t0, future) in started.items():
                limit = checks[name].timeout
                try:
                    future.result(timeout=max(0.0, limit - (time.perf_counter() - t0)))
                    results.append(_ok(name, t0))
                except concurrent.futures.TimeoutError:
                    results.append(_failed(name, t0, f"timed out after {limit:g}s"))
                except Exception as exc:
                    results.append(_failed(name, t0, _describe(exc)))
            return HealthReport(tuple(results))
        finally:
            # A hung ping must not hold the caller: its thread is left to finish alone.
            pool.shutdown(wait=False, cancel_futures=True)

    async def ahealth(self, timeout: float | None = None) -> HealthReport:
        """Async twin of :meth:`health`; async pings run on the loop, sync ones in threads."""
        checks = self._health_checks(timeout)
        results = await asyncio.gather(*(_one_async(n, c) for n, c in checks.items()))
        return HealthReport(tuple(results))

    def _health_checks(self, timeout: float | None) -> dict[str, _Check]:
        checks: dict[str, _Check] = {}
        settings = self._settings_or_none()
        for name in self._index().present_subsystems():
            sub = cast(providers.Container[Any], self.providers[name]).container.providers
            if "health_check" not in sub and "ahealth_check" not in sub:
                continue
            section = getattr(settings, name, None)
            limit = timeout or float(getattr(section, "health_timeout", DEFAULT_HEALTH_TIMEOUT))
            checks[name] = _Check(
                _effective(sub.get("health_check")), sub.get("ahealth_check"), limit
            )
        return checks

    # -- introspection -------------------------------------------------------------
    def graph(self, fmt: Literal["text", "mermaid"] = "text") -> str:
        """The provider graph as an indented tree or a Mermaid flowchart."""
        return render_graph(self._index(), fmt)

    @property
    def subsystems(self) -> dict[str, bool]:
        """Each subsystem container and whether the settings configure it."""
        index = self._index()
        present = set(index.present_subsystems())
        return {name: name in present for name in index.subsystem_names()}

    def _index(self) -> ProviderIndex:
        return ProviderIndex(self, getattr(self, "_dtpyfw_absent", frozenset()))

    def _resources(self) -> list[providers.Resource[Any]]:
        return self._index().ordered(providers.Resource[Any])

    def _settings_or_none(self) -> Settings | None:
        provider = self.providers.get("settings")
        if provider is None or (
            isinstance(provider, providers.Dependency) and not provider.is_defined
        ):
            return None
        value = provider()
        return value if isinstance(value, Settings) else None


class ServiceContainer(containers.DeclarativeContainer):
    """Every subsystem, composed. Subclass it to add your own providers.

    Build it with :meth:`from_settings`, :meth:`from_yaml` or :meth:`from_env`;
    subsystems whose settings section is absent are not built, and resolving one
    of their providers raises :class:`~dtpyfw.core.errors.NotConfigured`.
    """

    instance_type = ServiceContainerInstance
    #: The Settings class ``from_yaml``/``from_env`` load; services set their subclass.
    settings_class: ClassVar[type[Settings]] = Settings

    settings = providers.Dependency(instance_of=Settings)
    http = providers.Container(HttpContainer, settings=settings.provided.http)
    db = providers.Container(DatabaseContainer, settings=settings.provided.db)
    storage = providers.Container(StorageContainer, settings=settings.provided.storage)
    messaging = providers.Container(
        MessagingContainer,
        settings=settings.provided.messaging,
        redis_settings=settings.provided.redis,
        kafka_settings=settings.provided.kafka,
    )
    redis = providers.Container(RedisContainer, settings=settings.provided.redis)
    kafka = providers.Container(KafkaContainer, settings=settings.provided.kafka)
    ftp = providers.Container(FtpContainer, settings=settings.provided.ftp)
    security = providers.Container(
        SecurityContainer,
        settings=settings.provided.security,
        redis_settings=settings.provided.redis,
    )
    worker = providers.Container(
        WorkerContainer,
        settings=settings.provided.worker,
        redis_settings=settings.provided.redis,
        kafka_settings=settings.provided.kafka,
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceContainerInstance:
        """Build the container for ``settings`` (nothing connects until first use)."""
        container = cast(ServiceContainerInstance, cls(settings=providers.Object(settings)))
        absent = set()
        for name, provider in container.providers.items():
            if isinstance(provider, providers.Container) and _section_absent(settings, name):
                absent.add(name)
                for pname, inner in provider.container.providers.items():
                    inner.override(providers.Callable(_not_configured, name, pname))
        container._dtpyfw_absent = frozenset(absent)
        return container

    @classmethod
    def from_yaml(cls, path: str | Path, **load_options: Any) -> ServiceContainerInstance:
        """``load_settings(path)`` with :attr:`settings_class`, then :meth:`from_settings`."""
        return cls.from_settings(
            load_settings(path, settings_class=cls.settings_class, **load_options)
        )

    @classmethod
    def from_env(cls, **load_options: Any) -> ServiceContainerInstance:
        """Settings from the environment (and ``$DTPYFW_CONFIG_FILE`` when set)."""
        return cls.from_settings(
            load_settings(None, settings_class=cls.settings_class, **load_options)
        )


class _Overriding:
    """Undo handle returned by ``override``; usable as a context manager."""

    def __init__(self, applied: list[providers.Provider[Any]], container: Any = None) -> None:
        self._applied = applied
        self._container = container

    def __enter__(self) -> _Overriding:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.reset()

    def reset(self) -> None:
        """Restore what was overridden, newest first; a second call does nothing."""
        for provider in reversed(self._applied):
            provider.reset_last_overriding()
        self._applied = []
        if self._container is not None:
            self._container.reset_last_overriding()
            self._container = None


class _Check:
    __slots__ = ("asynchronous", "sync", "timeout")

    def __init__(self, sync: Any, asynchronous: Any, timeout: float) -> None:
        self.sync = sync
        self.asynchronous = asynchronous
        self.timeout = timeout


def _effective(provider: Any) -> Any:
    # A ping that times out keeps running in its thread after health() returns. It
    # must hold the provider it really calls: dependency-injector does not keep an
    # overriding provider alive for a call in flight, and resetting the override
    # meanwhile would free it under that thread.
    while provider is not None and provider.overridden:
        provider = provider.last_overriding
    return provider


def _run_sync(provider: Any) -> None:
    result = provider()
    if inspect.isawaitable(result):
        raise ContainerError("health_check returned an awaitable; declare it as ahealth_check")


async def _one_async(name: str, check: _Check) -> HealthResult:
    t0 = time.perf_counter()
    try:
        if check.asynchronous is not None:
            await asyncio.wait_for(_await_all(check.asynchronous), check.timeout)
        else:
            await asyncio.wait_for(asyncio.to_thread(_run_sync, check.sync), check.timeout)
    except TimeoutError:
        return _failed(name, t0, f"timed out after {check.timeout:g}s")
    except Exception as exc:
        return _failed(name, t0, _describe(exc))
    return _ok(name, t0)


async def _await_all(provider: Any) -> None:
    result = provider()
    while inspect.isawaitable(result):  # async dependencies may wrap the coroutine
        result = await result


def _ok(name: str, t0: float) -> HealthResult:
    return HealthResult(name=name, ok=True, latency_ms=(time.perf_counter() - t0) * 1000)


def _failed(name: str, t0: float, error: str) -> HealthResult:
    return HealthResult(
        name=name, ok=False, latency_ms=(time.perf_counter() - t0) * 1000, error=error
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _section_absent(settings: Settings, name: str) -> bool:
    return name in type(settings).model_fields and getattr(settings, name) is None


def _not_configured(subsystem: str, provider: str) -> Any:
    raise NotConfigured(
        f"{subsystem}.{provider}: subsystem {subsystem!r} is not configured; "
        f"add a `{subsystem}:` section to the settings (an empty one gives its embedded default)"
    )


def _is_async(resource: providers.Resource[Any]) -> bool:
    if resource.is_async_mode_enabled():
        return True
    provides = resource.provides
    if provides is None:
        return False
    fn = inspect.unwrap(provides)  # dependency-injector wraps the function it is given
    return inspect.isasyncgenfunction(fn) or inspect.iscoroutinefunction(fn)


def _related(provider: providers.Provider[Any]) -> Iterator[providers.Provider[Any]]:
    for dep in provider.related:
        if providers.is_provider(dep):
            yield dep


def _cycles(index: ProviderIndex) -> list[str]:
    problems: list[str] = []
    state: dict[int, int] = {}  # 1 = on the stack, 2 = done
    stack: list[providers.Provider[Any]] = []

    def visit(node: providers.Provider[Any]) -> None:
        state[id(node)] = 1
        stack.append(node)
        for dep in _related(node):
            if state.get(id(dep)) == 1:
                loop = [*stack[stack.index(dep) :], dep]
                problems.append("dependency cycle: " + " -> ".join(index.path(p) for p in loop))
            elif id(dep) not in state:
                visit(dep)
        stack.pop()
        state[id(node)] = 2

    for provider, _path in index.present():
        if id(provider) not in state:
            visit(provider)
    return problems


def _raise_collected(errors: list[BaseException]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup("several resources failed to shut down", errors)  # type: ignore[type-var]


def _names(node: Any) -> list[str]:
    if isinstance(node, providers.Container):
        return list(node.container.providers)
    if isinstance(node, containers.Container):
        return list(node.providers)
    return []
