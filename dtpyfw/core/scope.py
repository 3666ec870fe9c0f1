"""Request scope: per-request resources created on first use, closed when the scope ends."""

from __future__ import annotations

__all__ = ["Scope", "Scoped", "ascope", "scope"]

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from dependency_injector import providers

from dtpyfw.core.errors import ScopeError

_current: ContextVar[Scope | None] = ContextVar("dtpyfw_scope", default=None)

_SYNC, _ASYNC, _PLAIN = "sync", "async", "plain"


class Scope:
    """One request's cache of scoped values and the stack that closes them."""

    __slots__ = ("_stack", "_values", "is_async")

    def __init__(self, stack: contextlib.ExitStack | contextlib.AsyncExitStack) -> None:
        self._stack = stack
        self._values: dict[int, Any] = {}
        self.is_async = isinstance(stack, contextlib.AsyncExitStack)

    def _resolve(self, provider: Scoped, make: Callable[[], Any]) -> Any:
        key = id(provider)
        try:
            return self._values[key]
        except KeyError:
            pass
        kind = provider.kind
        if kind == _SYNC:
            value = self._stack.enter_context(make())
        elif kind == _PLAIN:
            value = make()
        else:
            if not isinstance(self._stack, contextlib.AsyncExitStack):
                raise ScopeError(
                    f"{provider.describe()} is async: resolve it inside "
                    "`async with container.ascope():`"
                )
            # A task, not a coroutine, so concurrent awaits in one request share the value.
            value = asyncio.ensure_future(_enter_async(self._stack, make))
        self._values[key] = value
        return value


async def _enter_async(stack: contextlib.AsyncExitStack, make: Callable[[], Any]) -> Any:
    manager = make()
    if inspect.isawaitable(manager):  # its own dependencies were async
        manager = await manager
    return await stack.enter_async_context(manager)


class Scoped(providers.Provider[Any]):
    """A provider whose value lives for one request scope.

    ``factory`` is a generator function (code after ``yield`` runs when the scope
    ends; the exception that ended it is thrown in at the ``yield``), an async
    generator function (needs ``container.ascope()``), or a plain callable (cached
    per scope, nothing to close). Positional and keyword arguments may be providers.
    """

    __slots__ = ("_factory", "_inner", "kind")

    def __init__(self, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._factory = factory
        if inspect.isasyncgenfunction(factory):
            self.kind = _ASYNC
            wrapped: Callable[..., Any] = contextlib.asynccontextmanager(factory)
        elif inspect.isgeneratorfunction(factory):
            self.kind = _SYNC
            wrapped = contextlib.contextmanager(factory)
        else:
            self.kind = _PLAIN
            wrapped = factory
        self._inner = providers.Callable(wrapped, *args, **kwargs)
        super().__init__()

    def __deepcopy__(self, memo: dict[Any, Any] | None = None) -> Scoped:
        memo = {} if memo is None else memo
        copied = memo.get(id(self))
        if copied is not None:
            return copied  # type: ignore[no-any-return]
        copied = self.__class__.__new__(self.__class__)
        memo[id(self)] = copied
        copied._factory = self._factory
        copied.kind = self.kind
        copied._inner = providers.deepcopy(self._inner, memo)
        providers.Provider.__init__(copied)
        self._copy_overridings(copied, memo)
        return copied

    @property
    def related(self) -> Iterator[providers.Provider[Any]]:
        """The providers this one depends on (for validation and the graph)."""
        yield from self._inner.related
        yield from super().related

    @property
    def args(self) -> tuple[Any, ...]:
        """Positional arguments, as given."""
        return tuple(self._inner.args)

    def describe(self) -> str:
        """A readable name for error messages."""
        return f"scoped provider {getattr(self._factory, '__qualname__', self._factory)!r}"

    def _provide(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        current = _current.get()
        if current is None:
            raise ScopeError(
                f"{self.describe()} is request-scoped: resolve it inside "
                "`with container.scope():` or `async with container.ascope():` "
                "(create_app opens one per request)"
            )
        return current._resolve(self, lambda: self._inner(*args, **kwargs))


@contextlib.contextmanager
def scope() -> Iterator[Scope]:
    """Open a sync request scope; scoped values close in reverse order on exit."""
    with contextlib.ExitStack() as stack:
        current = Scope(stack)
        token = _current.set(current)
        try:
            yield current
        finally:
            _current.reset(token)


@contextlib.asynccontextmanager
async def ascope() -> AsyncIterator[Scope]:
    """Async twin of :func:`scope`; also serves async-generator scoped providers."""
    async with contextlib.AsyncExitStack() as stack:
        current = Scope(stack)
        token = _current.set(current)
        try:
            yield current
        finally:
            _current.reset(token)
            # Values still being created when the scope ends must not leak.
            for value in current._values.values():
                if isinstance(value, asyncio.Future) and not value.done():
                    value.cancel()
