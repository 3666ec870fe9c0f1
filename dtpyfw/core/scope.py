"""Request scope: per-request resources created on first use, closed when the scope ends."""

from __future__ import annotations

__all__ = ["Scope", "Scoped", "ascope", "scope"]

import asyncio
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, cast

from dependency_injector import providers

from dtpyfw.core.errors import ScopeError

_current: ContextVar[Scope | None] = ContextVar("dtpyfw_scope", default=None)

_SYNC, _ASYNC, _PLAIN = "sync", "async", "plain"


class Scope:
    """One request's cache of scoped values and the generators that close them.

    Closing runs every generator's code after ``yield`` in reverse order of
    creation. The exception that ended the scope is thrown in at the ``yield``
    (so a session can roll back); a generator can never swallow it. An error
    raised while closing is raised after every other generator has closed.
    """

    __slots__ = ("_cleanups", "_token", "_values", "is_async")

    def __init__(self, is_async: bool) -> None:
        self._values: dict[int, Any] = {}
        self._cleanups: list[Generator[Any, None, None] | AsyncGenerator[Any, None]] = []
        self._token: Token[Scope | None] | None = None
        self.is_async = is_async

    # -- sync --------------------------------------------------------------------
    def __enter__(self) -> Scope:
        self._token = _current.set(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._reset()
        self.close(exc)

    def close(self, exc: BaseException | None = None) -> None:
        """Close sync scoped values (newest first), passing ``exc`` in."""
        failure: BaseException | None = None
        while self._cleanups:
            gen = cast(Generator[Any, None, None], self._cleanups.pop())
            try:
                _finish_sync(gen, exc)
            except BaseException as error:  # keep closing the others first
                failure = failure or error
        if failure is not None and failure is not exc:
            raise failure

    # -- async -------------------------------------------------------------------
    async def __aenter__(self) -> Scope:
        self._token = _current.set(self)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._reset()
        await self.aclose(exc)

    async def aclose(self, exc: BaseException | None = None) -> None:
        """Close every scoped value, sync or async (newest first), passing ``exc`` in."""
        for value in self._values.values():
            # Values still being created when the scope ends must not leak.
            if isinstance(value, asyncio.Future) and not value.done():
                value.cancel()
        failure: BaseException | None = None
        while self._cleanups:
            gen = self._cleanups.pop()
            try:
                if inspect.isasyncgen(gen):
                    await _finish_async(cast(AsyncGenerator[Any, None], gen), exc)
                else:
                    _finish_sync(cast(Generator[Any, None, None], gen), exc)
            except BaseException as error:
                failure = failure or error
        if failure is not None and failure is not exc:
            raise failure

    def _reset(self) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None

    # -- resolution ----------------------------------------------------------------
    def _resolve(self, provider: Scoped, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        key = id(provider)
        values = self._values
        if key in values:
            return values[key]
        kind = provider.kind
        if kind == _SYNC:
            gen = provider._inner(*args, **kwargs)
            value = next(gen)
            self._cleanups.append(gen)
        elif kind == _PLAIN:
            value = provider._inner(*args, **kwargs)
        else:
            if not self.is_async:
                raise ScopeError(
                    f"{provider.describe()} is async: resolve it inside "
                    "`async with container.ascope():`"
                )
            # A task, not a coroutine, so concurrent awaits in one request share the value.
            value = asyncio.ensure_future(self._start_async(provider, args, kwargs))
        values[key] = value
        return value

    async def _start_async(
        self, provider: Scoped, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        gen = provider._inner(*args, **kwargs)
        if inspect.isawaitable(gen):  # its own dependencies were async
            gen = await gen
        value = await gen.__anext__()
        self._cleanups.append(gen)
        return value


def _finish_sync(gen: Generator[Any, None, None], exc: BaseException | None) -> None:
    try:
        if exc is None:
            next(gen)
        else:
            gen.throw(exc)
    except StopIteration:
        return
    except BaseException as error:
        if error is exc:
            return  # re-raised as it should be: the caller is already propagating it
        raise
    raise RuntimeError(
        f"scoped generator {getattr(gen, '__qualname__', gen)!r} yielded more than once"
    )


async def _finish_async(gen: AsyncGenerator[Any, None], exc: BaseException | None) -> None:
    try:
        if exc is None:
            await gen.__anext__()
        else:
            await gen.athrow(exc)
    except StopAsyncIteration:
        return
    except BaseException as error:
        if error is exc:
            return
        raise
    raise RuntimeError(
        f"scoped generator {getattr(gen, '__qualname__', gen)!r} yielded more than once"
    )


class Scoped(providers.Provider[Any]):
    """A provider whose value lives for one request scope.

    ``factory`` is a generator function (code after ``yield`` runs when the scope
    ends; the exception that ended it is thrown in at the ``yield``; its
    dependencies must be sync), an async generator function (needs
    ``container.ascope()``; its dependencies may be async), or a plain callable
    (cached per scope, nothing to close). Arguments may be providers.
    """

    __slots__ = ("_factory", "_inner", "kind")

    def __init__(self, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._factory = factory
        if inspect.isasyncgenfunction(factory):
            self.kind = _ASYNC
        elif inspect.isgeneratorfunction(factory):
            self.kind = _SYNC
        else:
            self.kind = _PLAIN
        self._inner = providers.Callable(factory, *args, **kwargs)
        _fix_async_mode(self)
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
        _fix_async_mode(copied)
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
        return current._resolve(self, args, kwargs)


def _fix_async_mode(provider: Scoped) -> None:
    # A sync generator cannot await its dependencies, so its call never needs
    # dependency-injector's per-call "did this return an awaitable?" check, which
    # costs more than the rest of a scoped resolve put together.
    if provider.kind == _SYNC:
        provider._inner.disable_async_mode()


def scope() -> Scope:
    """A sync request scope (``with scope(): ...``); values close in reverse order on exit."""
    return Scope(is_async=False)


def ascope() -> Scope:
    """Async twin of :func:`scope` (``async with ascope(): ...``); also serves async generators."""
    return Scope(is_async=True)
