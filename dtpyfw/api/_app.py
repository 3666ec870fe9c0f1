"""``create_app``: a FastAPI app whose lifespan runs the container."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from dtpyfw.core._extras import require

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from dtpyfw.api._settings import ApiSettings
    from dtpyfw.container import ServiceContainerInstance


def create_app(
    container: ServiceContainerInstance,
    *,
    routers: Sequence[APIRouter] = (),
    wire_modules: Iterable[str] = (),
    wire_packages: Iterable[str] = (),
    configure_logs: bool = True,
    lifespan: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[Any]] | None = None,
    api: ApiSettings | None = None,
    **fastapi_options: Any,
) -> FastAPI:
    """Build the app. On startup: validate, configure logging, init resources, wire.

    Your own ``lifespan`` runs inside, once all of that is up. On shutdown: your
    lifespan exits, then unwire, then every resource closes in reverse order.
    Every request gets a request id and a request scope (``container.ascope()``)
    that commits when the response is below 400; errors become RFC 9457 problem
    details; ``/livez`` and ``/readyz`` are added.

    ``api`` (default: the settings' ``api`` section if the service's Settings
    has one, else ``ApiSettings()``) adds, outermost first: ``Server-Timing``,
    CORS (only when origins are listed), gzip, then an app-wide rate limit
    when ``api.rate_limit.limit`` is set.
    """
    fastapi = require("fastapi", "api")
    from dtpyfw.api._health import health_router
    from dtpyfw.api._problems import install_problem_handlers
    from dtpyfw.api._ratelimit import app_rate_limit
    from dtpyfw.api._settings import ApiSettings

    settings = container.settings()
    if api is None:
        section = getattr(settings, "api", None)
        api = section if isinstance(section, ApiSettings) else ApiSettings()
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
                await _start_rate_limiting(app, container, api)
                yield
        finally:
            if configure_logs:
                from dtpyfw.log import reset_logging

                reset_logging()

    fastapi_options.setdefault("title", settings.service.name)
    fastapi_options.setdefault("version", settings.service.version)
    if api.rate_limit.limit is not None:
        fastapi_options["dependencies"] = [
            *fastapi_options.get("dependencies", ()),
            fastapi.Depends(app_rate_limit(api.rate_limit)),
        ]
    app: FastAPI = fastapi.FastAPI(lifespan=run_container, **fastapi_options)
    app.state.container = container
    app.state.api_settings = api
    install_problem_handlers(app)
    _add_middleware(app, container, api)
    app.include_router(health_router(container))
    for router in routers:
        app.include_router(router)
    return app


def _add_middleware(app: FastAPI, container: ServiceContainerInstance, api: ApiSettings) -> None:
    """Innermost first: Starlette runs the last one added outermost."""
    from dtpyfw.api._middleware import RequestContextMiddleware, ServerTimingMiddleware

    app.add_middleware(RequestContextMiddleware, container=container)
    if api.gzip_minimum_size is not None:
        from starlette.middleware.gzip import GZipMiddleware

        app.add_middleware(GZipMiddleware, minimum_size=api.gzip_minimum_size)
    if api.cors.enabled:
        from starlette.middleware.cors import CORSMiddleware

        cors = api.cors
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors.allow_origins,
            allow_credentials=cors.allow_credentials,
            allow_methods=cors.allow_methods,
            allow_headers=cors.allow_headers,
            expose_headers=cors.expose_headers,
            max_age=cors.max_age,
        )
    if api.server_timing:
        app.add_middleware(ServerTimingMiddleware)


async def _start_rate_limiting(
    app: FastAPI, container: ServiceContainerInstance, api: ApiSettings
) -> None:
    """The counters' store, chosen by settings (Redis through the container's redis section)."""
    from dtpyfw.api._ratelimit import MemoryRateLimitStore, RedisRateLimitStore

    settings = api.rate_limit
    app.state.rate_limit_algorithm = settings.algorithm
    if settings.backend == "redis":
        redis_provider: Any = container.redis
        client = await redis_provider.async_client()
        app.state.rate_limit_store = RedisRateLimitStore(client, prefix=settings.prefix)
    else:
        app.state.rate_limit_store = MemoryRateLimitStore()


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
