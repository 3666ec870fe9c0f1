"""Request scopes: caching, closing order, exceptions thrown in, never swallowed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from dtpyfw.container import containers, providers
from dtpyfw.core.errors import ScopeError
from dtpyfw.core.scope import Scoped, ascope, scope


def _container(log: list[str]) -> containers.DynamicContainer:
    def outer() -> Iterator[str]:
        log.append("open outer")
        try:
            yield "outer"
        except ValueError:
            log.append("outer saw ValueError")
            raise
        finally:
            log.append("close outer")

    def inner(dep: str) -> Iterator[str]:
        log.append(f"open inner({dep})")
        yield "inner"
        log.append("close inner")

    def swallower() -> Iterator[str]:
        try:
            yield "swallower"
        except ValueError:
            log.append("swallower swallowed")  # and returns: must not hide the error

    def twice() -> Iterator[str]:
        yield "a"
        yield "b"

    async def async_value(dep: str) -> AsyncIterator[str]:
        log.append(f"open async({dep})")
        yield "async"
        log.append("close async")

    class C(containers.DeclarativeContainer):
        o = Scoped(outer)
        i = Scoped(inner, o)
        s = Scoped(swallower)
        t = Scoped(twice)
        a = Scoped(async_value, o)
        p = Scoped(dict)

    return C()


def test_values_are_cached_per_scope_and_closed_newest_first() -> None:
    """Inside one scope a value is created once; on exit the newest closes first."""
    log: list[str] = []
    c = _container(log)
    with scope():
        assert c.i() == "inner"
        assert c.i() == "inner"
        assert c.p() is c.p()
    assert log == ["open outer", "open inner(outer)", "close inner", "close outer"]


def test_exception_is_thrown_in_and_never_swallowed() -> None:
    """The error that ends a scope reaches each generator and still propagates."""
    log: list[str] = []
    c = _container(log)

    def request() -> None:
        with scope():
            c.o()
            c.s()
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        request()
    assert log == ["open outer", "swallower swallowed", "outer saw ValueError", "close outer"]


def test_closing_error_raised_after_every_value_closed() -> None:
    """A generator that yields twice is an error, and the others still close."""
    log: list[str] = []
    c = _container(log)

    def request() -> None:
        with scope():
            c.o()
            c.t()

    with pytest.raises(RuntimeError, match="yielded more than once"):
        request()
    assert log[-1] == "close outer"


def test_async_scope_serves_sync_and_async_values() -> None:
    """ascope resolves async generators once (even when awaited concurrently)."""
    log: list[str] = []
    c = _container(log)

    async def run() -> None:
        async with ascope():
            first, second = await asyncio.gather(c.a(), c.a())
            assert first == second == "async"

    asyncio.run(run())
    assert log == ["open outer", "open async(outer)", "close async", "close outer"]


def test_async_values_need_an_async_scope() -> None:
    """Resolving an async-generator provider in a sync scope says which scope to use."""
    c = _container([])
    with pytest.raises(ScopeError, match=r"async with container\.ascope"), scope():
        c.a()


def test_scopes_do_not_leak_between_threads_of_context() -> None:
    """Outside any scope, resolution fails even after a scope was used before."""
    c = _container([])
    with scope():
        c.o()
    with pytest.raises(ScopeError, match="request-scoped"):
        c.o()
    with c.o.override(providers.Object("x")):
        assert c.o() == "x"
