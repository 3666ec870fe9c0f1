"""``dtpyfw consume``: run a service's message handlers until SIGTERM.

::

    dtpyfw consume config.yaml --handlers my_service.handlers [more.modules ...]
        [--concurrency N] [--max-in-flight N] [--shutdown-timeout SECONDS]

The container's resources are initialised first, as ``create_app`` does at
its lifespan start, so handlers see the same container an API process has:
``task.delay()`` finds the bound task queue. Each module is imported and
wired into the container (so its ``@inject`` handlers receive their
providers), and every
:class:`~dtpyfw.messaging.Handlers` collection it defines is subscribed. If
any handler is a coroutine function the async bus and runner serve them all
(plain handlers then run in worker threads); otherwise the sync ones do.

SIGTERM or Ctrl-C stops gracefully: no more fetching, handlers in flight
finish (up to the shutdown timeout), acknowledgements are flushed, clients
close; the exit status is then 0.
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
import asyncio
import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

from dtpyfw.core.errors import DtpyfwError

if TYPE_CHECKING:
    from dtpyfw.messaging import Handlers

EXIT_OK = 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``consume`` command to the ``dtpyfw`` parser."""
    consume = commands.add_parser(
        "consume", help="run message handlers from the broker until SIGTERM"
    )
    consume.add_argument("file", type=Path, help="settings file (YAML)")
    consume.add_argument(
        "--handlers",
        nargs="+",
        required=True,
        metavar="MODULE",
        help="modules defining dtpyfw.messaging.Handlers (imported and wired)",
    )
    consume.add_argument("--concurrency", type=int, default=None, help="handlers run at once")
    consume.add_argument(
        "--max-in-flight", type=int, default=None, help="unfinished messages before pausing"
    )
    consume.add_argument(
        "--shutdown-timeout", type=float, default=None, help="seconds to finish in-flight work"
    )
    consume.set_defaults(handler=_consume)


def _consume(args: argparse.Namespace, out: TextIO) -> int:
    from dtpyfw.cli._main import _container_class, _load

    settings = _load(args)
    if settings.messaging is None:
        raise DtpyfwError(f"{args.file}: no `messaging:` section, so nothing to consume")
    overrides = {
        name: value
        for name, value in (
            ("concurrency", args.concurrency),
            ("max_in_flight", args.max_in_flight),
            ("shutdown_timeout", args.shutdown_timeout),
        )
        if value is not None
    }
    if overrides:
        messaging = settings.messaging.model_validate(
            {**settings.messaging.model_dump(), **overrides}
        )
        settings = settings.model_copy(update={"messaging": messaging})
    transport = settings.messaging.transport if settings.messaging is not None else "memory"
    container: Any = _container_class(args).from_settings(settings)
    modules = [_import(name) for name in args.handlers]
    container.wire(modules=modules)
    collections = [(module, found) for module in modules for found in _handlers_of(module)]
    if not collections:
        raise DtpyfwError(
            f"no dtpyfw.messaging.Handlers found in {', '.join(args.handlers)}: "
            "define one (handlers = Handlers()) and decorate functions with @handlers.handler"
        )
    count = sum(len(handlers) for _module, handlers in collections)
    use_async = any(handlers.any_async() for _module, handlers in collections)
    print(
        f"consuming with {count} handler(s) from {', '.join(args.handlers)} over the "
        f"{transport} transport ({'async' if use_async else 'sync'}); "
        "stop with SIGTERM or Ctrl-C",
        file=out,
        flush=True,
    )
    try:
        if use_async:
            asyncio.run(_run_async(container, collections))
        else:
            # The resources create_app starts at its lifespan: the task queue (bound
            # for task.delay()), pools, the tracer. Handlers get the same container.
            container.init_resources()
            bus = container.messaging.bus()
            for _module, handlers in collections:
                bus.include(handlers)
            container.messaging.runner().run(handle_signals=True)
    finally:
        container.unwire()
        asyncio.run(container.ashutdown_resources())
    print("stopped", file=out, flush=True)
    return EXIT_OK


async def _run_async(container: Any, collections: list[tuple[ModuleType, Handlers]]) -> None:
    await container.ainit_resources()  # as create_app's lifespan does (see _consume)
    bus = container.messaging.async_bus()
    for _module, handlers in collections:
        bus.include(handlers)
    try:
        await container.messaging.async_runner().run(handle_signals=True)
    finally:
        await container.ashutdown_resources()


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise DtpyfwError(f"cannot import handler module {name!r}: {exc}") from exc


def _handlers_of(module: ModuleType) -> list[Handlers]:
    from dtpyfw.messaging import Handlers

    found: dict[int, Handlers] = {}
    for value in vars(module).values():
        if isinstance(value, Handlers):
            found.setdefault(id(value), value)
    return list(found.values())
