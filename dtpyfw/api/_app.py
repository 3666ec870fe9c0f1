"""``create_app``: a FastAPI app whose lifespan runs the container."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from dtpyfw.core._extras import require

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from dtpyfw.container import ServiceContainerInstance


def create_app(
    container: ServiceContainerInstance,
    *,
    routers: Sequence[APIRouter] = (),
    wire_modules: Iterable[str] = (),
    wire_packages: Iterable[str] = (),
    configure_logs: bool = True,
    lifespan: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[Any]] | None = None,
    **fastapi_options: Any,
) -> FastAPI:
    """Build the app. On startup: validate, configure logging, init resources, wire.

    Your own ``lifespan`` runs inside, once all of that is up. On shutdown: your
    lifespan exits, then unwire, then every resource closes in reverse order.
    Every request gets a request id and a request scope (``container.ascope()``)
    that commits when the response is below 400; errors become RFC 9457 problem
    details; ``/livez`` and ``/readyz`` are added.
    """
    fastapi = require("fastapi", "api")
    from dtpyfw.api._health import health_router
    from dtpyfw.api._middleware import RequestContextMiddleware
    from dtpyfw.api._problems import install_problem_handlers

    settings = container.settings()
    modules, packages = list(wire_modules), list(wire_packages)

    @contextlib.asynccontextmanager
    async def run_container(app: FastAPI) -> AsyncIterator[None]:
        container.validate()
        if configure_logs:
            from dtpyfw.log import configure_logging

            configure_logging(
                settings.log, service=settings.service.name, version=settings.service.version
            )
        try:
            async with _container_running(container, modules, packages, lifespan, app):
                yield
        finally:
            if configure_logs:
                from dtpyfw.log import reset_logging

                reset_logging()

    fastapi_options.setdefault("title", settings.service.name)
    fastapi_options.setdefault("version", settings.service.version)
    app: FastAPI = fastapi.FastAPI(lifespan=run_container, **fastapi_options)
    app.state.container = container
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, container=container)
    app.include_router(health_router(container))
    for router in routers:
        app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def _container_running(
    container: ServiceContainerInstance,
    modules: list[str],
    packages: list[str],
    lifespan: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[Any]] | None,
    app: FastAPI,
) -> AsyncIterator[None]:
    await container.ainit_resources()
    try:
        if modules or packages:
            container.wire(modules=modules or None, packages=packages or None)
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield
    finally:
        if modules or packages:
            container.unwire()
        await container.ashutdown_resources()
