"""Assemble the example: settings -> container -> FastAPI app."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from dtpyfw.api import create_app
from dtpyfw.container import ServiceContainerInstance
from dtpyfw.db import acreate_all
from examples.notes_service.auth import auth_router
from examples.notes_service.models import User
from examples.notes_service.routes import events_router, router
from examples.notes_service.settings import NotesContainer, NotesSettings

CONFIG = Path(__file__).with_name("config.yaml")
_log = logging.getLogger("notes_service")


def build_container(config: str | Path = CONFIG, **load_options: Any) -> ServiceContainerInstance:
    """The container from the YAML file (environment and .env apply as usual)."""
    return NotesContainer.from_yaml(config, **load_options)


def build_app(container: ServiceContainerInstance | None = None) -> FastAPI:
    """The FastAPI app; tables are created at start (a real service would migrate)."""
    container = container or build_container()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = await container.db.async_database()
        await acreate_all(database)
        await _seed_demo_user(container, database)
        bus = container.messaging.async_bus()

        @bus.handler("note.created", group="audit")
        async def audit(message: Any) -> None:
            _log.info("note created", extra={"note_id": message.subject})

        yield

    return create_app(
        container,
        routers=[auth_router, router, events_router],
        wire_modules=["examples.notes_service.routes", "examples.notes_service.auth"],
        lifespan=lifespan,
    )


async def _seed_demo_user(container: ServiceContainerInstance, database: Any) -> None:
    """Create the configured demo user when it does not exist yet (local runs)."""
    settings = container.settings()
    demo = settings.demo_user if isinstance(settings, NotesSettings) else None
    if demo is None or not demo.enabled:
        return
    hasher = container.security.password_hasher()
    async with database.session() as session:
        if await session.scalar(select(User).where(User.username == demo.username)) is None:
            password_hash = await hasher.ahash(demo.password.get_secret_value())
            session.add(
                User(
                    username=demo.username,
                    password_hash=password_hash,
                    scopes=" ".join(demo.scopes),
                )
            )
            _log.warning(
                "demo user created; its default password is for local runs only",
                extra={"username": demo.username},
            )
