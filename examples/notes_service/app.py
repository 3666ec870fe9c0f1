"""Assemble the example: settings -> container -> FastAPI app."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from dtpyfw.api import create_app
from dtpyfw.container import ServiceContainer, ServiceContainerInstance
from dtpyfw.db import acreate_all
from examples.notes_service.routes import events_router, router

CONFIG = Path(__file__).with_name("config.yaml")
_log = logging.getLogger("notes_service")


def build_container(config: str | Path = CONFIG, **load_options: Any) -> ServiceContainerInstance:
    """The container from the YAML file (environment and .env apply as usual)."""
    return ServiceContainer.from_yaml(config, **load_options)


def build_app(container: ServiceContainerInstance | None = None) -> FastAPI:
    """The FastAPI app; tables are created at start (a real service would migrate)."""
    container = container or build_container()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await acreate_all(await container.db.async_database())
        bus = container.messaging.async_bus()

        @bus.handler("note.created", group="audit")
        async def audit(message: Any) -> None:
            _log.info("note created", extra={"note_id": message.subject})

        yield

    return create_app(
        container,
        routers=[router, events_router],
        wire_modules=["examples.notes_service.routes"],
        lifespan=lifespan,
    )
